//! Replays every input the fuzz targets once crashed on (`fuzz/regressions/<target>/`), and the
//! hand-written seeds they start from (`fuzz/seeds/<target>/`), through the same entry points, so
//! that each crash stays fixed in an ordinary `cargo test`.

use std::path::Path;

#[test]
fn every_fuzz_regression_input_is_handled() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for (target, run) in credledger_api::fuzzing::TARGETS {
        let seeds = fuzz.join("seeds").join(target);
        assert!(seeds.is_dir(), "{} is missing", seeds.display());
        let regressions = fuzz.join("regressions").join(target);
        let entries = std::fs::read_dir(&seeds).unwrap().chain(std::fs::read_dir(&regressions).into_iter().flatten());
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                run(&std::fs::read(&path).unwrap());
                replayed += 1;
            }
        }
    }
    assert!(replayed >= 2 * credledger_api::fuzzing::TARGETS.len(), "only {replayed} inputs replayed");
}

/// The seeds of the checkpoint and export targets are signed with the targets' key, so that the
/// fuzzer starts past the signature checks, in the lines themselves.
#[test]
fn the_signed_seeds_verify() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let verifier = credledger_api::fuzzing::ledger_verifier();
    let note = std::fs::read_to_string(seeds.join("checkpoint_note/note")).unwrap();
    assert_eq!(verifier.verify(&note).unwrap().tree_size, 7);
    for export in ["ledger", "organization"] {
        let bytes = std::fs::read(seeds.join("export_lines").join(export)).unwrap();
        let verified = credledger_store::verify::verify_export(&bytes[..], &verifier, None, |_| {});
        assert!(verified.is_ok(), "{export}: {verified:?}");
    }
}
