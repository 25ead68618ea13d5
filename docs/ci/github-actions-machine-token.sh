#!/bin/sh
# CI recipe: a machine token in a CI secret (GitHub Actions, GitLab CI, any runner).
#
# A machine token (`cl_mt_{env}_…`) is created once by a human and stored in the pipeline's
# encrypted secrets; the job needs nothing else, no login and no configuration file:
#
#   credledger token create --name "GitHub Actions prod" --env prod --project api --expires 90d
#   # ✓ Token created
#   # Token: cl_mt_prod_…        <- copy it into the CI secret CREDLEDGER_TOKEN, now
#
# The token reads the secrets of the project it is scoped to (`--project`), and nothing else.
#
# GitHub Actions:
#
#   - name: Deploy api/production
#     env:
#       CREDLEDGER_URL: ${{ vars.CREDLEDGER_URL }}
#       CREDLEDGER_TOKEN: ${{ secrets.CREDLEDGER_TOKEN }}
#       CREDLEDGER_PROJECT: api
#       CREDLEDGER_ENV: production
#       DEPLOY: ./deploy.sh
#     run: sh docs/ci/github-actions-machine-token.sh
#
# GitLab CI:
#
#   deploy-production:
#     script:
#       - sh docs/ci/github-actions-machine-token.sh
#     variables:
#       CREDLEDGER_URL: https://ledger.example.com
#       CREDLEDGER_TOKEN: $CREDLEDGER_TOKEN      # a masked, protected CI/CD variable
#       CREDLEDGER_PROJECT: api
#       CREDLEDGER_ENV: production
#
# Variables:
#   CREDLEDGER_URL      the credledger server, e.g. https://ledger.example.com
#   CREDLEDGER_TOKEN    the machine token
#   CREDLEDGER_PROJECT  the project (name or id) whose secrets the deploy needs
#   CREDLEDGER_ENV      its environment
#   DEPLOY              the deploy command (default ./deploy.sh)
#
# A revoked, disabled or expired token exits 3, and the refusal is in the ledger.

set -eu

: "${CREDLEDGER_URL:?set CREDLEDGER_URL to the credledger server}"
: "${CREDLEDGER_TOKEN:?set CREDLEDGER_TOKEN to the machine token}"
: "${CREDLEDGER_PROJECT:?set CREDLEDGER_PROJECT to the project}"
: "${CREDLEDGER_ENV:?set CREDLEDGER_ENV to the environment}"

# Which token this job runs as (kind `machine_token`, its project), recorded as one use.
credledger whoami -o json

# The deploy, with the environment's secrets in its environment; nothing is written to disk.
credledger run -- sh -c "${DEPLOY:-./deploy.sh}"
