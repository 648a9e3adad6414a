#!/usr/bin/env bash
# A stand-in for `claude setup-token` that prints the same screens (ANSI colours, spinner frames, the long
# authorize URL, the paste prompt), checks the pasted `<code>#<state>` against the state in its URL, and prints a
# `sk-ant-oat01-` token the way the real CLI does. The real token exchange is hard-coded to Anthropic, so tests
# drive the login modal with this. Runs with bash alone (on the host or inside the runtime image).
#   FAKE_LOGIN_TOKEN  the token to print (default: random)
#   FAKE_LOGIN_FAIL   if set, the exchange fails with this message even for a right code
set -u
esc=$'\e'
rand() { head -c 64 /dev/urandom | base64 | tr -d '=+/\n' | cut -c1-"$1"; }
spin() {  # spin TEXT ROUNDS
  local frames=(⠋ ⠙ ⠹ ⠸ ⠼ ⠴ ⠦ ⠧ ⠇ ⠏) i
  for ((i = 0; i < $2; i++)); do
    printf '\r%s[2K%s[36m%s%s[0m %s' "$esc" "$esc" "${frames[i % 10]}" "$esc" "$1"
    sleep 0.03
  done
  printf '\r%s[2K' "$esc"
}
state=$(rand 43)
challenge=$(rand 43)
printf '%s[?25l' "$esc"
spin "Starting authentication…" 8
printf '%s[1mBrowser didn'"'"'t open? Use the url below to sign in:%s[22m\n\n' "$esc" "$esc"
printf '%s[4mhttps://claude.ai/oauth/authorize?code=true&client_id=9d1c250a-e61b-44d9-88ed-5944d1962f5e' "$esc"
printf '&response_type=code&redirect_uri=https%%3A%%2F%%2Fconsole.anthropic.com%%2Foauth%%2Fcode%%2Fcallback'
printf '&scope=user%%3Ainference&code_challenge=%s&code_challenge_method=S256&state=%s%s[24m\n\n' \
  "$challenge" "$state" "$esc"
printf '%s[?25h' "$esc"
printf 'Paste code here if prompted > '
IFS= read -r code || { printf '\n%s[31mNo code received%s[39m\n' "$esc" "$esc"; exit 1; }
code=${code%$'\r'}
spin "Exchanging code for token…" 10
if [[ "$code" != *"#$state" || "${code%%#*}" == "" ]]; then
  printf '%s[31mOAuth error: Invalid code. Please make sure the full code was copied%s[39m\n' "$esc" "$esc"
  exit 1
fi
if [[ -n "${FAKE_LOGIN_FAIL:-}" ]]; then
  printf '%s[31mOAuth error: %s%s[39m\n' "$esc" "$FAKE_LOGIN_FAIL" "$esc"
  exit 1
fi
token=${FAKE_LOGIN_TOKEN:-sk-ant-oat01-$(rand 60)$(rand 30)-$(rand 6)AA}
printf '%s[32m✓ Long-lived authentication token created successfully!%s[39m\n\n' "$esc" "$esc"
printf 'Your OAuth token (valid for 1 year):\n\n%s[1m%s%s[22m\n\n' "$esc" "$token" "$esc"
printf 'Store this token securely. You won'"'"'t be able to see it again.\n\n'
printf 'Use this token by setting: export CLAUDE_CODE_OAUTH_TOKEN=<token>\n'
