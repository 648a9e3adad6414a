#!/usr/bin/env bash
# A stand-in for `claude setup-token` that prints the same screens (ANSI colours, spinner frames, the long
# authorize URL, the paste prompt), checks the pasted `<code>#<state>` against the state in its URL, and prints a
# `sk-ant-oat01-` token the way the real CLI does. The real token exchange is hard-coded to Anthropic, so tests
# drive the login modal with this. Runs with bash alone (on the host or inside the runtime image).
#   FAKE_LOGIN_TOKEN  the token to print (default: random)
#   FAKE_LOGIN_FAIL   if set, the exchange fails with this message even for a right code
#   FAKE_LOGIN_SCREENS  2.0.31 (default) or 2.1.332: whose screens to print. 2.1.332's, as captured for real
#                     (tests/fixtures/transcripts/setup-token/2.1.332.raw): a banner, words separated by cursor
#                     moves (ESC[<col>G), lines ended by CR CR LF, the short authorize URL inside an OSC 8
#                     hyperlink, the prompt above a boxed input line; an OAuth error leaves it waiting ("Press
#                     Enter to retry") instead of exiting. Its URL has no state= parameter: the code this fake
#                     accepts is then <code>#<the URL's query>.
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
if [[ "${FAKE_LOGIN_SCREENS:-2.0.31}" == 2.1.* ]]; then
  words() {  # words COLUMN WORD...: one line, each word placed by ESC[<column>G as 2.1.x draws it
    local col=$1 word
    shift
    for word in "$@"; do
      printf '%s[%dG%s' "$esc" "$col" "$word"
      col=$((col + ${#word} + 1))
    done
    printf '\r\r\n'
  }
  printf '%s7%s[r%s8%s[?25l%s[?2004h' "$esc" "$esc" "$esc" "$esc" "$esc"
  printf '%s[31mWelcome%s[9Gto%s[12GClaude%s[19GCode%s[24G%s[2mv%s%s[22m%s[39m\r\r\n' \
    "$esc" "$esc" "$esc" "$esc" "$esc" "$esc" "${FAKE_LOGIN_SCREENS}" "$esc" "$esc"
  printf '..........................................................\r\r\n\r\r\n'
  words 2 This will guide you through long-lived "(1-year)" auth token setup for your Claude account. Claude \
    subscription required.
  printf '\r\r\n'
  words 2 "Browser" "didn't" "open?" Use the URL below to sign in "(c" to "copy)"
  printf '\r\r\n'
  url="https://claude.ai/oauth/authorize?$state"
  printf '%s]8;id=%s;%s\a%s[37m%s[2m%s%s[22m%s[39m%s]8;;\a\r\r\n\r\r\n' \
    "$esc" "$(rand 6)" "$url" "$esc" "$esc" "$url" "$esc" "$esc" "$esc"
  words 2 Hold Shift while selecting to use your "terminal's" native copy
  printf '\r\r\n'
  words 2 Paste code here if prompted
  printf '%s[2G%s[97m╭%s╮%s[39m\r\r\n' "$esc" "$esc" "$(printf '─%.0s' $(seq 1 60))" "$esc"
  printf '%s[2G%s[97m│%s[250G│%s[39m\r\r\n' "$esc" "$esc" "$esc" "$esc"
  printf '%s[2G%s[97m╰%s╯%s[39m\r\r\n' "$esc" "$esc" "$(printf '─%.0s' $(seq 1 60))" "$esc"
  st="$esc\\"  # string terminator of the APC query
  printf '%s[3C%s[2A%s[>0q%s[c%s_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA%s' "$esc" "$esc" "$esc" "$esc" "$esc" "$st"
  IFS= read -r code || exit 1
  code=${code%$'\r'}
  spin "Exchanging code for token…" 10
  if [[ "$code" != *"#$state" || "${code%%#*}" == "" || -n "${FAKE_LOGIN_FAIL:-}" ]]; then
    printf '\r%s[1C%s[3A%s[95m✘%s[39m %s[95mOAuth error: %s\r%s[2B%s[39m %s[97mPress %s[1mEnter%s[22m to retry%s[39m%s[K\r\n' \
      "$esc" "$esc" "$esc" "$esc" "$esc" "${FAKE_LOGIN_FAIL:-Invalid code. Please make sure the full code was copied}" \
      "$esc" "$esc" "$esc" "$esc" "$esc" "$esc" "$esc"
    IFS= read -r _ || true  # waits, as the real one does
    exit 1
  fi
  token=${FAKE_LOGIN_TOKEN:-sk-ant-oat01-$(rand 60)$(rand 30)-$(rand 6)AA}
  printf '%s[32m✓%s[39m Long-lived authentication token created successfully!\r\r\n\r\r\n' "$esc" "$esc"
  words 2 Your OAuth token "(valid" for 1 "year):"
  printf '\r\r\n%s[2G%s[1m%s%s[22m\r\r\n\r\r\n' "$esc" "$esc" "$token" "$esc"
  words 2 Use this token by setting: export "CLAUDE_CODE_OAUTH_TOKEN=<token>"
  exit 0
fi
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
