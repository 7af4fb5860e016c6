#!/bin/sh
# Send a slash command to a local jitbot, signed exactly as Slack signs it,
# using the signing secret from .env.example. For trying the bot without a
# Slack workspace:
#
#   examples/send-command.sh U0ALICE "request sandbox 2h trying jitbot"
#
# The answer is the ephemeral message Slack would show the user. Cards and
# DMs go to SLACK_API_URL (see the README for watching them).
set -eu
user=${1:?usage: send-command.sh USER_ID "command text"}
text=${2:?usage: send-command.sh USER_ID "command text"}
url=${JITBOT_URL:-http://127.0.0.1:8080}
secret=${SLACK_SIGNING_SECRET:-$(sed -n 's/^SLACK_SIGNING_SECRET=//p' .env.example)}
encoded=$(printf '%s' "$text" | od -An -tx1 -v | tr -d ' \n' | sed 's/\(..\)/%\1/g')
body="user_id=$user&user_name=$user&channel_id=C0GENERAL&command=%2Fjit&text=$encoded&trigger_id=local.$(date +%s)"
timestamp=$(date +%s)
signature="v0=$(printf 'v0:%s:%s' "$timestamp" "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')"
curl -sS "$url/slack/commands" \
  -H "Content-Type: application/x-www-form-urlencoded" \
  -H "X-Slack-Request-Timestamp: $timestamp" \
  -H "X-Slack-Signature: $signature" \
  --data "$body"
echo
