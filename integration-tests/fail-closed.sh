# Sourced by integration-tests/demo and integration-tests/run-tests: nothing they start may reach AWS.
#
# AWS clients that are given no endpoint of the local stack would use AWS's own endpoints, and a user's
# profile, SSO session or instance role. Here they get instead: a refused local port as the endpoint of
# every AWS service (AWS_ENDPOINT_URL, read by the AWS SDKs and boto3; explicit endpoints still win), no
# config or credentials file, no profile, no instance metadata and no container credentials. The
# stack's static test credentials are exported by `local-stack up`.
# shellcheck shell=bash
export AWS_ENDPOINT_URL="${KC_AWS_FALLBACK_ENDPOINT:-http://127.0.0.1:9}"
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE \
  AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_AUTHORIZATION_TOKEN

# Succeeds only when every endpoint the demo and the tests use is exported and local (127.0.0.1).
require_local_endpoints() {
  local v ok=0
  for v in KINESIS_ENDPOINT S3_ENDPOINT DYNAMODB_ENDPOINT OPENSEARCH_ENDPOINT REDSHIFT_DATA_ENDPOINT; do
    if [[ "${!v:-}" != http://127.0.0.1:* ]]; then
      echo "fail-closed: $v is '${!v:-}', not a local endpoint (http://127.0.0.1:PORT): refusing to run" >&2
      ok=1
    fi
  done
  return "$ok"
}
