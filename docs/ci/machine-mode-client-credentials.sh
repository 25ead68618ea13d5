#!/bin/sh
# CI recipe: machine mode with a service credential (OAuth2 client_credentials).
#
# An organization owner creates a service credential once (POST /v1/service-credentials/ORG_ID,
# or `credledger service-credential create`); the answer shows the client secret exactly once.
# Store the client id and the secret as encrypted CI secrets. When both variables are set the CLI
# is in machine mode, with no flag: on each invocation it fetches a 15-minute access token from
# the server's /oauth2/token, and it never reads or writes a configuration file or keychain.
#
# A service credential reads the secrets of any project of its organization (with
# credledger-api/read); this job pulls one environment's and runs the deploy with them.
#
# GitHub Actions:
#
#   - name: Deploy api/production
#     env:
#       CREDLEDGER_URL: ${{ vars.CREDLEDGER_URL }}
#       CREDLEDGER_CLIENT_ID: ${{ secrets.CREDLEDGER_CLIENT_ID }}
#       CREDLEDGER_CLIENT_SECRET: ${{ secrets.CREDLEDGER_CLIENT_SECRET }}
#       CREDLEDGER_PROJECT: api
#       CREDLEDGER_ENV: production
#       DEPLOY: ./deploy.sh
#     run: sh docs/ci/machine-mode-client-credentials.sh
#
# Variables:
#   CREDLEDGER_URL            the credledger server
#   CREDLEDGER_CLIENT_ID      the client id (cl_ci_…; not secret, but keep it with the secret)
#   CREDLEDGER_CLIENT_SECRET  the client secret (cl_cs_…)
#   CREDLEDGER_PROJECT        the project (name or id) whose secrets the deploy needs
#   CREDLEDGER_ENV            its environment
#   DEPLOY                    the deploy command (default ./deploy.sh)
#   CREDLEDGER_CLIENT_SCOPES  optional: the scopes to request, space-separated. This job only
#                             reads, so it defaults to credledger-api/read: even a credential
#                             allowed to write cannot change anything during this run.

set -eu

: "${CREDLEDGER_URL:?set CREDLEDGER_URL to the credledger server}"
: "${CREDLEDGER_CLIENT_ID:?set CREDLEDGER_CLIENT_ID to the service credential client id (cl_ci_…)}"
: "${CREDLEDGER_CLIENT_SECRET:?set CREDLEDGER_CLIENT_SECRET to the service credential secret (cl_cs_…)}"
: "${CREDLEDGER_PROJECT:?set CREDLEDGER_PROJECT to the project}"
: "${CREDLEDGER_ENV:?set CREDLEDGER_ENV to the environment}"

# Read-only for this run unless the pipeline asks for more.
CREDLEDGER_CLIENT_SCOPES="${CREDLEDGER_CLIENT_SCOPES:-credledger-api/read}"
export CREDLEDGER_CLIENT_SCOPES

# Which credential this job runs as: kind `service_credential`, and the scopes it got.
credledger whoami -o json

# The deploy, with the environment's secrets in its environment; nothing is written to disk.
credledger run -- sh -c "${DEPLOY:-./deploy.sh}"
