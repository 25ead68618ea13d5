#!/bin/sh
# CI recipe: a machine identity, its key in one CI secret.
#
# An organization admin creates the machine once; the key pair is generated locally and only the
# public key goes to the server:
#
#   credledger machine create deploy-prod --project api --env production
#   # prints CREDLEDGER_MACHINE_KEY=credledger-machine-v1:…   <- the CI secret
#
# The machine key string carries the organization, the machine id and the private key. With it in
# CREDLEDGER_MACHINE_KEY the CLI signs a short assertion and exchanges it for a 15-minute,
# read-only access token on each invocation: no shared secret is sent, nothing is written to
# disk. A machine is scoped to exactly one project and one environment: it pulls that
# environment's secrets and nothing else, and never writes (a leaked key exposes one
# environment, and every pull it made is in the ledger).
#
# GitHub Actions:
#
#   - name: Deploy api/production
#     env:
#       CREDLEDGER_URL: ${{ vars.CREDLEDGER_URL }}
#       CREDLEDGER_MACHINE_KEY: ${{ secrets.CREDLEDGER_MACHINE_KEY }}
#       DEPLOY: ./deploy.sh
#     run: sh docs/ci/machine-identity.sh
#
# Variables:
#   CREDLEDGER_URL          the credledger server
#   CREDLEDGER_MACHINE_KEY  the machine key string (credledger-machine-v1:…)
#   DEPLOY                  the deploy command, run with the environment's secrets in its
#                           environment (default ./deploy.sh)
#
# A revoked machine exits 3; replace the secret with the key of a new machine.

set -eu

: "${CREDLEDGER_URL:?set CREDLEDGER_URL to the credledger server}"
: "${CREDLEDGER_MACHINE_KEY:?set CREDLEDGER_MACHINE_KEY to the machine key (credledger-machine-v1:…)}"

# Which machine this job runs as: kind `machine`, with its project id and environment.
credledger whoami -o json

# The deploy, with the secrets of the machine's own project and environment in its environment:
# nothing is written to disk, and the job's exit code is the deploy's.
credledger run -- sh -c "${DEPLOY:-./deploy.sh}"
