#!/bin/sh
# CI recipe: a machine token in a CI secret (GitHub Actions, GitLab CI, any runner).
#
# A machine token (`cl_mt_{env}_…`) is created once by a human and stored in the pipeline's
# encrypted secrets; the job needs nothing else, no login and no configuration file:
#
#   credledger token create --name "GitHub Actions prod" --env prod --expires 90d
#   # ✓ Token created
#   # Token: cl_mt_prod_…        <- copy it into the CI secret CREDLEDGER_TOKEN, now
#
# GitHub Actions:
#
#   - name: Check the ledger
#     env:
#       CREDLEDGER_URL: ${{ vars.CREDLEDGER_URL }}
#       CREDLEDGER_TOKEN: ${{ secrets.CREDLEDGER_TOKEN }}
#     run: sh docs/ci/github-actions-machine-token.sh
#
# GitLab CI:
#
#   check-ledger:
#     script:
#       - sh docs/ci/github-actions-machine-token.sh
#     variables:
#       CREDLEDGER_URL: https://ledger.example.com
#       CREDLEDGER_TOKEN: $CREDLEDGER_TOKEN      # a masked, protected CI/CD variable
#
# Variables:
#   CREDLEDGER_URL    the credledger server, e.g. https://ledger.example.com
#   CREDLEDGER_TOKEN  the machine token
#
# Every command prints JSON (`-o json`) on standard output, for the next step to parse; a
# refused token (revoked, disabled, expired, outside its conditions) exits 3, an unreachable
# server 1. Rolling the token (`credledger token roll TOKEN_ID`) revokes the old value: update
# the secret when you do.

set -eu

: "${CREDLEDGER_URL:?set CREDLEDGER_URL to the credledger server}"
: "${CREDLEDGER_TOKEN:?set CREDLEDGER_TOKEN to a machine token (cl_mt_…)}"

# Which credential this job runs as: kind `machine_token`, its id, organization and scopes.
credledger whoami -o json

# The organization's active machine tokens, with owner, expiry and last use (values never shown).
credledger token list --state active -o json
