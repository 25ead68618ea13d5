#!/bin/sh
# CI recipe: machine mode with a service credential (OAuth2 client_credentials).
#
# An organization owner creates a service credential once (POST /v1/service-credentials/ORG_ID,
# or `credledger service-credential create`); the answer shows the client secret exactly once.
# Store the client id and the secret as encrypted CI secrets. When both variables are set the CLI
# is in machine mode, with no flag: on each invocation it fetches a 15-minute access token from
# the server's /oauth2/token, and it never reads or writes a configuration file or keychain.
#
# GitHub Actions:
#
#   - name: Tokens expiring within 30 days
#     env:
#       CREDLEDGER_URL: ${{ vars.CREDLEDGER_URL }}
#       CREDLEDGER_CLIENT_ID: ${{ secrets.CREDLEDGER_CLIENT_ID }}
#       CREDLEDGER_CLIENT_SECRET: ${{ secrets.CREDLEDGER_CLIENT_SECRET }}
#     run: sh docs/ci/machine-mode-client-credentials.sh
#
# Variables:
#   CREDLEDGER_URL            the credledger server
#   CREDLEDGER_CLIENT_ID      the client id (cl_ci_…; not secret, but keep it with the secret)
#   CREDLEDGER_CLIENT_SECRET  the client secret (cl_cs_…)
#   CREDLEDGER_CLIENT_SCOPES  optional: the scopes to request, space-separated. This job only
#                             reads, so it defaults to credledger-api/read: even a credential
#                             allowed to write cannot change anything during this run.

set -eu

: "${CREDLEDGER_URL:?set CREDLEDGER_URL to the credledger server}"
: "${CREDLEDGER_CLIENT_ID:?set CREDLEDGER_CLIENT_ID to the service credential client id (cl_ci_…)}"
: "${CREDLEDGER_CLIENT_SECRET:?set CREDLEDGER_CLIENT_SECRET to the service credential secret (cl_cs_…)}"

# Read-only for this run unless the pipeline asks for more.
CREDLEDGER_CLIENT_SCOPES="${CREDLEDGER_CLIENT_SCOPES:-credledger-api/read}"
export CREDLEDGER_CLIENT_SCOPES

# Which credential this job runs as: kind `service_credential`, and the scopes it got.
credledger whoami -o json

# Machine tokens that expire within 30 days, to roll before they break a pipeline.
credledger token list --state active --expiring-within 30d -o json
