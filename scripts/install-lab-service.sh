#!/usr/bin/env bash
# Install openlesson-collector as a systemd service on a lab machine (idempotent).
#
#   sudo scripts/install-lab-service.sh --profile lab --workspace WS_ID --block BLOCK < key.txt
#   sudo scripts/install-lab-service.sh --profile lab --key-file /root/openlesson.key
#   scripts/install-lab-service.sh --dry-run ...      # print the plan, change nothing
#
# Steps: a venv in /opt/openlesson-collector with the package (this checkout, or PyPI), the system
# user `openlesson`, /etc/openlesson-collector/NAME.{key,env,toml}, the unit collector@.service,
# `systemctl daemon-reload` and `systemctl enable --now collector@NAME.service`.
# Running it again upgrades the package and keeps existing key, env and profile files unless new
# values are given. The key is read from --key-file or stdin, never echoed, stored 0600 root.
set -euo pipefail

PROG=$(basename "$0")
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$SCRIPT_DIR")

PROFILE=lab
BASE_PROFILE=""
PREFIX=/opt/openlesson-collector
ETC_DIR=/etc/openlesson-collector
UNIT_DIR=/etc/systemd/system
SERVICE_USER=openlesson
SOURCE=""
KEY_FILE=""
WORKSPACE=""
BLOCK=""
BASE_URL=""
DISPLAY_VALUE=""
XAUTHORITY_VALUE=""
PYTHON=${PYTHON:-python3}
DRY_RUN=0
START=1

usage() {
    cat <<EOF
Usage: $PROG [options]

Installs openlesson-collector as the systemd service collector@NAME on this machine.

  --profile NAME        instance and profile name (default: $PROFILE); its settings go to
                        $ETC_DIR/NAME.toml
  --extends PROFILE     built-in profile the lab profile starts from (e.g. muse-2; default: lab,
                        any LSL stream); the lab settings (30 s chunks, a screen look every
                        30 s) are written into the profile either way
  --workspace ID        workspace the evidence goes to       (COLLECTOR_WORKSPACE)
  --block ID|TITLE      block the evidence goes to           (COLLECTOR_BLOCK)
  --base-url URL        API origin (default: https://openlesson.academy)
  --key-file PATH       copy the API key from PATH; otherwise it is read from stdin
                        (a prompt without echo in a terminal). An existing key is kept
                        when neither is given.
  --display :0          DISPLAY for screenshots (default: none, EEG only)
  --xauthority PATH     XAUTHORITY cookie for that display
  --source PATH|SPEC    what pip installs (default: this checkout if it has pyproject.toml,
                        else openlesson-collector from PyPI)
  --python PYTHON       interpreter for the venv (default: python3, 3.10+)
  --prefix DIR          install folder (default: $PREFIX)
  --user NAME           service user (default: $SERVICE_USER)
  --no-start            install and enable, but don't start now
  --dry-run             print what would be done; change nothing
  -h, --help            this help
EOF
}

die() { echo "$PROG: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --profile) PROFILE=${2:?--profile needs a NAME}; shift 2 ;;
        --extends) BASE_PROFILE=${2:?--extends needs a PROFILE}; shift 2 ;;
        --workspace) WORKSPACE=${2:?--workspace needs an ID}; shift 2 ;;
        --block) BLOCK=${2:?--block needs an ID or title}; shift 2 ;;
        --base-url) BASE_URL=${2:?--base-url needs a URL}; shift 2 ;;
        --key-file) KEY_FILE=${2:?--key-file needs a PATH}; shift 2 ;;
        --display) DISPLAY_VALUE=${2:?--display needs a value like :0}; shift 2 ;;
        --xauthority) XAUTHORITY_VALUE=${2:?--xauthority needs a PATH}; shift 2 ;;
        --source) SOURCE=${2:?--source needs a PATH or a pip spec}; shift 2 ;;
        --python) PYTHON=${2:?--python needs an interpreter}; shift 2 ;;
        --prefix) PREFIX=${2:?--prefix needs a DIR}; shift 2 ;;
        --user) SERVICE_USER=${2:?--user needs a NAME}; shift 2 ;;
        --no-start) START=0; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

[[ $PROFILE =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] \
    || die "--profile $PROFILE: use letters, digits, '.', '_' or '-' (it names the service instance)."
[[ $SERVICE_USER =~ ^[a-z_][a-z0-9_-]*$ ]] || die "--user $SERVICE_USER is not a valid user name."
uuid_re='^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
[[ -z $WORKSPACE || $WORKSPACE =~ $uuid_re ]] || die "--workspace $WORKSPACE is not a valid id (expected a UUID)."
[[ -z $BLOCK || -n $WORKSPACE ]] || die "--block needs --workspace."
[[ -z $BASE_URL || $BASE_URL =~ ^https?:// ]] || die "--base-url must start with http:// or https://."
[[ -z $KEY_FILE || -r $KEY_FILE ]] || die "cannot read the key file $KEY_FILE."
if [[ -z $SOURCE ]]; then
    if [[ -f $REPO_DIR/pyproject.toml ]]; then SOURCE=$REPO_DIR; else SOURCE=openlesson-collector; fi
fi

VENV=$PREFIX/venv
UNIT=collector@.service
INSTANCE=collector@$PROFILE.service
KEY_PATH=$ETC_DIR/$PROFILE.key
ENV_PATH=$ETC_DIR/$PROFILE.env
PROFILE_PATH=$ETC_DIR/$PROFILE.toml
STATE_DIR=/var/lib/openlesson-collector/$PROFILE

if [[ $DRY_RUN -eq 1 ]]; then
    echo "Dry run: nothing is changed. Planned steps:"
elif [[ $EUID -ne 0 ]]; then
    die "run as root (sudo $PROG ...), or add --dry-run to see the plan."
fi

step() { echo "==> $*"; }
# env_quote VALUE: a double-quoted value for a systemd EnvironmentFile (titles may have spaces).
env_quote() { local v=${1//\\/\\\\}; v=${v//\"/\\\"}; printf '"%s"' "$v"; }
# run CMD...: execute, or print it in a dry run.
run() {
    if [[ $DRY_RUN -eq 1 ]]; then printf '    would run:'; printf ' %q' "$@"; echo; else "$@"; fi
}
# write_file PATH MODE [WHAT]: stdin becomes PATH (root-owned, MODE) atomically. A dry run
# prints the content, or just WHAT when given.
write_file() {
    local path=$1 mode=$2 what=${3:-} tmp
    if [[ $DRY_RUN -eq 1 ]]; then
        if [[ -n $what ]]; then
            echo "    would write $path (mode $mode): $what"
            cat >/dev/null
        else
            echo "    would write $path (mode $mode):"
            sed 's/^/      | /'
        fi
        return
    fi
    tmp=$(mktemp "$path.XXXXXX")
    chmod "$mode" "$tmp"
    cat >"$tmp"
    mv -f "$tmp" "$path"
}

# 1. Package in its own venv.
step "Install the collector into $VENV (from $SOURCE)"
if [[ -x $VENV/bin/python ]]; then
    echo "    venv exists: upgrading in place"
else
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
        || die "$PYTHON is missing or older than 3.10; pass --python PYTHON (e.g. python3.11)."
    run "$PYTHON" -m venv "$VENV"
fi
run "$VENV/bin/python" -m pip install --quiet --upgrade pip
run "$VENV/bin/python" -m pip install --quiet --upgrade "$SOURCE"

# 2. System user, no login, home in its state folder.
step "Service user $SERVICE_USER"
if id -u "$SERVICE_USER" >/dev/null 2>&1; then
    echo "    user exists"
else
    run useradd --system --user-group --home-dir /var/lib/openlesson-collector --no-create-home \
        --shell /usr/sbin/nologin --comment "OpenLesson collector" "$SERVICE_USER"
fi
if getent group bluetooth >/dev/null 2>&1; then
    # BlueZ's D-Bus policy lets the bluetooth group talk to the adapter (Muse over BLE).
    run usermod -a -G bluetooth "$SERVICE_USER"
fi

# 3. Configuration: key (0600 root; systemd hands it over as a credential), env, profile.
step "Configuration in $ETC_DIR"
run install -d -m 0755 "$ETC_DIR"
if [[ -n $KEY_FILE ]]; then
    if [[ $DRY_RUN -eq 1 ]]; then
        echo "    would copy the key from $KEY_FILE to $KEY_PATH (mode 0600, root)"
    else
        key=$(head -n 1 -- "$KEY_FILE" | tr -d '[:space:]')
    fi
elif [[ -e $KEY_PATH && -t 0 ]]; then
    echo "    key $KEY_PATH exists: kept (pass --key-file or pipe a key to replace it)"
elif [[ $DRY_RUN -eq 1 ]]; then
    if [[ -e $KEY_PATH ]]; then
        echo "    would keep $KEY_PATH unless a key arrives on stdin"
    else
        echo "    would read the API key from stdin into $KEY_PATH (mode 0600, root)"
    fi
else
    if [[ -t 0 ]]; then
        read -r -s -p "OpenLesson API key (sk_... or gsk_..., not shown): " key; echo
    else
        IFS= read -r key || true
    fi
    key=$(printf '%s' "${key:-}" | tr -d '[:space:]')
    if [[ -z $key && -e $KEY_PATH ]]; then
        echo "    no key on stdin: $KEY_PATH kept"
    elif [[ -z $key ]]; then
        die "no API key: pipe it on stdin or pass --key-file PATH."
    fi
fi
if [[ $DRY_RUN -eq 0 && -n ${key:-} ]]; then
    [[ $key == sk_* || $key == gsk_* ]] || echo "    warning: the key does not start with sk_ or gsk_" >&2
    # printf is a builtin: the key never appears in a process list.
    printf '%s\n' "$key" | write_file "$KEY_PATH" 0600
    unset key
    echo "    key stored in $KEY_PATH (mode 0600, root)"
fi

if [[ -e $ENV_PATH && -z $WORKSPACE$BLOCK$BASE_URL$DISPLAY_VALUE$XAUTHORITY_VALUE ]]; then
    echo "    $ENV_PATH exists: kept"
else
    [[ -e $ENV_PATH ]] && run cp -p "$ENV_PATH" "$ENV_PATH.bak"
    {
        echo "# collector@$PROFILE.service settings (see $UNIT). Written by $PROG."
        echo "COLLECTOR_PROFILE=$PROFILE_PATH"
        [[ -n $WORKSPACE ]] && echo "COLLECTOR_WORKSPACE=$WORKSPACE"
        [[ -n $BLOCK ]] && echo "COLLECTOR_BLOCK=$(env_quote "$BLOCK")"
        [[ -n $BASE_URL ]] && echo "OPENLESSON_BASE_URL=$BASE_URL"
        [[ -n $DISPLAY_VALUE ]] && echo "DISPLAY=$DISPLAY_VALUE"
        [[ -n $XAUTHORITY_VALUE ]] && echo "XAUTHORITY=$XAUTHORITY_VALUE"
        echo "# Extra \`collector run\` options, e.g. --device muse or --screen-interval 10:"
        echo "COLLECTOR_ARGS="
    } | write_file "$ENV_PATH" 0600
fi

if [[ -e $PROFILE_PATH ]]; then
    echo "    $PROFILE_PATH exists: kept"
else
    {
        echo "# Lab profile $PROFILE: \`collector run --profile $PROFILE_PATH\`. Command-line options override it."
        echo "extends = \"${BASE_PROFILE:-lab}\""
        echo "name = \"$PROFILE\""
        echo
        echo "# The lab settings of the built-in profile \`lab\` (collector/profiles/lab.toml): one API key"
        echo "# serves about 30 machines at 4 requests/min each. --extends replaces only the device."
        echo "[analysis]"
        echo "chunk_s = 30"
        echo
        echo "[screen]"
        echo "mode = \"auto\""
        echo "interval_s = 30"
        echo "keepalive_s = 60"
        echo
        echo "# [session] workspace/block may live here instead of $ENV_PATH:"
        echo "# [session]"
        echo "# workspace = \"...\""
        echo "# block = \"...\""
    } | write_file "$PROFILE_PATH" 0644
fi

# 4. The unit (the venv path follows --prefix).
step "systemd unit $UNIT_DIR/$UNIT"
sed "s#/opt/openlesson-collector/venv#$VENV#g" "$SCRIPT_DIR/$UNIT" \
    | write_file "$UNIT_DIR/$UNIT" 0644 "scripts/$UNIT with ExecStart=$VENV/bin/collector run --profile \${COLLECTOR_PROFILE} ..." 
run systemctl daemon-reload
if [[ $START -eq 1 ]]; then
    step "Enable and start $INSTANCE"
    run systemctl enable "$INSTANCE"
    # restart = start, or pick up a new package and configuration when it already runs.
    run systemctl restart "$INSTANCE"
else
    step "Enable $INSTANCE (not started: --no-start)"
    run systemctl enable "$INSTANCE"
fi

target=""
[[ -n $WORKSPACE ]] && target+=" --workspace $WORKSPACE"
[[ -n $BLOCK ]] && target+=" --block $(printf '%q' "$BLOCK")"
cat <<EOF

Done$([[ $DRY_RUN -eq 1 ]] && echo " (dry run: nothing was changed)").
  Check the machine:  sudo $VENV/bin/collector doctor --api-key-file $KEY_PATH --spool $STATE_DIR --profile $PROFILE_PATH$target
  Follow the service: journalctl -u $INSTANCE -f
  Pending evidence:   sudo -u $SERVICE_USER COLLECTOR_SPOOL_DIR=$STATE_DIR $VENV/bin/collector status
EOF
