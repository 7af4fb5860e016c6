#!/bin/sh
# Click Approve on a request's card as USER, signed exactly as Slack signs
# interactions, using the signing secret from .env.example:
#
#   examples/send-click.sh U0LEAD R-7K3Q9X
set -eu
user=${1:?usage: send-click.sh USER_ID REQUEST_ID}
request=${2:?usage: send-click.sh USER_ID REQUEST_ID}
url=${JITBOT_URL:-http://127.0.0.1:8080}
secret=${SLACK_SIGNING_SECRET:-$(sed -n 's/^SLACK_SIGNING_SECRET=//p' .env.example)}
payload=$(printf '{"type":"block_actions","user":{"id":"%s","username":"%s"},"trigger_id":"local.%s","channel":{"id":"C0APPROVALS"},"actions":[{"action_id":"jit_approve","value":"%s"}]}' \
  "$user" "$user" "$(date +%s)" "$request")
encoded=$(printf '%s' "$payload" | od -An -tx1 -v | tr -d ' \n' | sed 's/\(..\)/%\1/g')
body="payload=$encoded"
timestamp=$(date +%s)
signature="v0=$(printf 'v0:%s:%s' "$timestamp" "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')"
curl -sS -o /dev/null -w 'HTTP %{http_code}\n' "$url/slack/interactions" \
  -H "Content-Type: application/x-www-form-urlencoded" \
  -H "X-Slack-Request-Timestamp: $timestamp" \
  -H "X-Slack-Signature: $signature" \
  --data "$body"
