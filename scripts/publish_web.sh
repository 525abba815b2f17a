#!/usr/bin/env bash
# Publishes the reference web client for a deployed stack: web/ (without its tests) and a
# config.json made from the stack's outputs, to any S3 bucket or prefix you serve over HTTPS
# (a static website behind CloudFront, say). The page needs nothing else.
#
#   scripts/publish_web.sh STACK_NAME s3://my-site-bucket/forum
#
# Then add the site's origin (https://...) to the stack's AllowedOrigins parameter, so the
# browser may call the API and PUT presigned uploads.
set -euo pipefail
stack="${1:?usage: publish_web.sh STACK_NAME s3://bucket/prefix}"
target="${2:?usage: publish_web.sh STACK_NAME s3://bucket/prefix}"
output() {
  aws cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
api="$(output HttpApiUrl)"
ws="$(output WebSocketUrl)"
root="$(cd "$(dirname "$0")/.." && pwd)"
aws s3 sync "$root/web" "$target" --exclude 'tests/*' --delete \
  --cache-control 'no-cache' --exclude 'config.json'
printf '{"apiBase":"%s/api/forum","wsUrl":"%s","mintTokens":false}\n' "$api" "$ws" |
  aws s3 cp - "$target/config.json" --content-type application/json --cache-control no-cache
echo "published to $target: the page calls $api and $ws"
