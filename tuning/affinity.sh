#!/usr/bin/env bash
# affinity.sh: keep network interrupt work off the CPUs that run corecast's shards.
#
# corecast runs one pinned shard thread per core. Interrupts from the NIC, and the softirq TCP work
# they trigger, would otherwise land on those same cores and steal time from them. Give --server-cpus
# the CPUs the shards are pinned to; the default (every CPU but the last) assumes shard i runs on
# CPU i and `shards` in corecast.toml is one less than the CPU count. This script
#   1. pins every IRQ of one interface (found in /proc/interrupts) round-robin onto the IRQ CPUs,
#   2. sets RPS (receive packet steering) so packets of a NIC with fewer RX queues than IRQ CPUs are
#      spread over the IRQ CPUs only, and turns RPS off otherwise,
#   3. sets XPS (transmit packet steering) so every CPU sends on its own TX queue (multi-queue NICs),
#   4. optionally pins a load generator running on the same host to the non-server CPUs.
# Nothing here survives a reboot or a driver reload; irqbalance, if running, undoes step 1.
# Run it before corecast-server starts (see the ExecStartPre= line in corecast-server.service).

set -euo pipefail

PROG=${0##*/}

usage() {
    cat <<EOF
Usage: $PROG [options]

Pin the NIC IRQs of one interface (and optionally a load generator) to CPUs that
corecast's shards do not use.

Options:
  --server-cpus LIST   CPUs the server shards run on, e.g. 0-7 or 0-3,8-11.
                       Default: every online CPU except the last one (then set
                       shards = that count in corecast.toml).
  --irq-cpus LIST      CPUs that take the NIC IRQs and RPS work.
                       Default: the online CPUs not in --server-cpus.
  --iface NAME         Network interface. Default: the interface of the default route.
  --loadgen-pids LIST  Comma-separated PIDs of a load generator on this host to pin
                       (all their threads, with taskset -a).
  --loadgen-name NAME  Same, for every process whose name is exactly NAME
                       (e.g. corecast-bench).
  --loadgen-cpus LIST  CPUs for the load generator. Default: the CPUs not in --server-cpus.
  --dry-run            Print every write (to /proc/irq/*/smp_affinity_list,
                       rps_cpus, xps_cpus) and taskset call it would make, with the
                       current value; change nothing. Needs no root.
  -h, --help           Show this help.

A LIST is a kernel CPU list: comma-separated CPU numbers and ranges (0-3,8,10-11).

Without --dry-run it must run as root. A host with no IRQs for the interface (a VM
with a paravirtual NIC that has none, a container, loopback) is not an error: the
script reports "no IRQs found for <iface>" and exits 0.

Exit status: 0 done (or nothing to do); 1 not root, or a write was refused (e.g. a
kernel-managed IRQ); 2 bad arguments.
EOF
}

die() { echo "$PROG: $*" >&2; exit 2; }
warn() { echo "$PROG: warning: $*" >&2; }

DRY_RUN=0
SERVER_CPUS=""
IRQ_CPUS=""
IFACE=""
LOADGEN_PIDS=""
LOADGEN_NAME=""
LOADGEN_CPUS=""

while (($# > 0)); do
    opt=$1
    case $opt in
        --server-cpus | --irq-cpus | --iface | --loadgen-pids | --loadgen-name | --loadgen-cpus)
            (($# >= 2)) || die "$opt needs a value (see --help)"
            val=$2
            shift 2
            ;;
        --server-cpus=* | --irq-cpus=* | --iface=* | --loadgen-pids=* | --loadgen-name=* | --loadgen-cpus=*)
            val=${opt#*=}
            opt=${opt%%=*}
            shift
            ;;
        --dry-run) DRY_RUN=1; shift; continue ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option: $opt (see --help)" ;;
    esac
    case $opt in
        --server-cpus) SERVER_CPUS=$val ;;
        --irq-cpus) IRQ_CPUS=$val ;;
        --iface) IFACE=$val ;;
        --loadgen-pids) LOADGEN_PIDS=$val ;;
        --loadgen-name) LOADGEN_NAME=$val ;;
        --loadgen-cpus) LOADGEN_CPUS=$val ;;
    esac
done

if ((DRY_RUN == 0)) && ((EUID != 0)); then
    echo "$PROG: changing IRQ affinity, RPS/XPS and other processes' CPU affinity needs root;" >&2
    echo "$PROG: run it with sudo, or add --dry-run to see what it would do." >&2
    exit 1
fi

# ---- CPU lists -----------------------------------------------------------------------------------

# Expands a kernel CPU list ("0-3,8") into sorted, unique CPU numbers, one per line.
expand_cpulist() {
    local list=$1 part lo hi c
    [[ $list =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] || return 1
    local -a parts
    IFS=, read -r -a parts <<<"$list"
    for part in "${parts[@]}"; do
        lo=${part%-*}
        hi=${part#*-}
        ((10#$lo <= 10#$hi)) || return 1
        for ((c = 10#$lo; c <= 10#$hi; c++)); do echo "$c"; done
    done | sort -n -u
}

# Prints the CPUs given as arguments as a compact kernel CPU list ("0-3,8").
compress_cpus() {
    local out="" start="" prev="" c
    for c in "$@"; do
        if [[ -z $start ]]; then
            start=$c
        elif ((c != prev + 1)); then
            out+="${out:+,}$start"
            if ((prev != start)); then out+="-$prev"; fi
            start=$c
        fi
        prev=$c
    done
    if [[ -n $start ]]; then
        out+="${out:+,}$start"
        if ((prev != start)); then out+="-$prev"; fi
    fi
    echo "$out"
}

# Prints the hex CPU mask the kernel uses in rps_cpus / xps_cpus: 32-bit words, most significant
# first, comma-separated ("00000001,000000f0" for CPUs 4-7 and 32). No CPUs gives "0".
cpus_to_mask() {
    local -a words=()
    local c w top=0 i out=""
    if (($# == 0)); then echo 0; return; fi
    for c in "$@"; do
        w=$((c / 32))
        words[w]=$((${words[w]:-0} | (1 << (c % 32))))
        if ((w > top)); then top=$w; fi
    done
    for ((i = top; i >= 0; i--)); do
        out+=$(printf '%08x' "${words[i]:-0}")
        if ((i > 0)); then out+=,; fi
    done
    echo "$out"
}

# Reads a CPU list argument into the named array, checking every CPU is online.
read_cpus() {
    local name=$1 list=$2 c expanded
    local -n arr=$name
    expanded=$(expand_cpulist "$list") || die "not a CPU list: '$list' (e.g. 0-7 or 0-3,8)"
    mapfile -t arr <<<"$expanded"
    for c in "${arr[@]}"; do
        [[ -n ${ONLINE_SET[$c]:-} ]] || die "CPU $c in '$list' is not online (online: $ONLINE_LIST)"
    done
}

# Prints the online CPUs that are not in the given list.
complement() {
    local -A skip=()
    local c
    for c in "$@"; do skip[$c]=1; done
    for c in "${ONLINE[@]}"; do
        if [[ -z ${skip[$c]:-} ]]; then echo "$c"; fi
    done
}

ONLINE_LIST=$(cat /sys/devices/system/cpu/online 2>/dev/null || true)
if [[ -z $ONLINE_LIST ]]; then
    ONLINE_LIST="0-$(($(getconf _NPROCESSORS_ONLN) - 1))"
fi
mapfile -t ONLINE < <(expand_cpulist "$ONLINE_LIST")
declare -A ONLINE_SET=()
for c in "${ONLINE[@]}"; do ONLINE_SET[$c]=1; done

declare -a SERVER=() IRQ=() LOADGEN=()
if [[ -n $SERVER_CPUS ]]; then read_cpus SERVER "$SERVER_CPUS"; fi
if [[ -n $IRQ_CPUS ]]; then read_cpus IRQ "$IRQ_CPUS"; fi

if [[ -z $SERVER_CPUS && -z $IRQ_CPUS ]]; then
    if ((${#ONLINE[@]} < 2)); then
        echo "only one online CPU ($ONLINE_LIST): server shards and IRQs cannot be separated; nothing to do"
        exit 0
    fi
    SERVER=("${ONLINE[@]:0:${#ONLINE[@]}-1}")
    IRQ=("${ONLINE[-1]}")
elif [[ -z $IRQ_CPUS ]]; then
    mapfile -t IRQ < <(complement "${SERVER[@]}")
    ((${#IRQ[@]} > 0)) || die "--server-cpus $SERVER_CPUS covers every online CPU; give --irq-cpus as well"
elif [[ -z $SERVER_CPUS ]]; then
    mapfile -t SERVER < <(complement "${IRQ[@]}")
    ((${#SERVER[@]} > 0)) || die "--irq-cpus $IRQ_CPUS covers every online CPU; give --server-cpus as well"
fi

declare -A SERVER_SET=()
for c in "${SERVER[@]}"; do SERVER_SET[$c]=1; done
overlap=()
for c in "${IRQ[@]}"; do
    if [[ -n ${SERVER_SET[$c]:-} ]]; then overlap+=("$c"); fi
done
if ((${#overlap[@]} > 0)); then
    warn "CPUs $(compress_cpus "${overlap[@]}") are both server and IRQ CPUs: shards there share time with interrupts"
fi

if [[ -n $LOADGEN_CPUS ]]; then
    read_cpus LOADGEN "$LOADGEN_CPUS"
else
    mapfile -t LOADGEN < <(complement "${SERVER[@]}")
    if ((${#LOADGEN[@]} == 0)); then LOADGEN=("${IRQ[@]}"); fi
fi

# ---- interface -----------------------------------------------------------------------------------

default_iface() {
    local dev=""
    if command -v ip >/dev/null 2>&1; then
        dev=$(ip -o route show default 2>/dev/null |
            awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')
        if [[ -z $dev ]]; then
            dev=$(ip -o -6 route show default 2>/dev/null |
                awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')
        fi
    fi
    if [[ -z $dev && -r /proc/net/route ]]; then
        dev=$(awk 'NR > 1 && $2 == "00000000" { print $1; exit }' /proc/net/route)
    fi
    echo "$dev"
}

if [[ -z $IFACE ]]; then
    IFACE=$(default_iface)
    if [[ -z $IFACE ]]; then
        echo "no default route, so no interface to tune; pass --iface NAME"
        exit 0
    fi
fi
[[ $IFACE =~ ^[A-Za-z0-9_.:@-]+$ ]] || die "not an interface name: '$IFACE'"
[[ -e /sys/class/net/$IFACE ]] || die "no such interface: $IFACE (see ip link)"

echo "interface:   $IFACE"
echo "server CPUs: $(compress_cpus "${SERVER[@]}")  (shards; set shards = ${#SERVER[@]} in corecast.toml)"
echo "IRQ CPUs:    $(compress_cpus "${IRQ[@]}")"
if ((DRY_RUN)); then echo "mode:        dry run, nothing is changed"; fi
echo

# ---- writes --------------------------------------------------------------------------------------

FAILED=0
CHANGES=0

# Writes value to a /proc or /sys file, or in a dry run says it would, showing the current value.
apply_write() {
    local path=$1 value=$2 note=${3:-} current
    current=$(tr -d '\n' 2>/dev/null <"$path" || echo '?')
    if ((DRY_RUN)); then
        printf 'would write %-20s > %s   (now %s)%s\n' "$value" "$path" "$current" "${note:+  # $note}"
        return 0
    fi
    if { printf '%s\n' "$value" >"$path"; } 2>/dev/null; then
        printf 'wrote %-20s > %s   (was %s)%s\n' "$value" "$path" "$current" "${note:+  # $note}"
        CHANGES=$((CHANGES + 1))
    else
        warn "could not write $value to $path (kernel-managed IRQ or read-only sysfs?); left at $current"
        FAILED=$((FAILED + 1))
    fi
}

# Prints "IRQ NAME" for every IRQ in /proc/interrupts that belongs to the interface: the MSI/MSI-X
# vectors of its PCI function, the queue vectors of a virtio-net device (virtioN-input.K,
# virtioN-output.K), and IRQs whose action name contains the interface name as a token
# (eth0-TxRx-3, i40e-eth0-TxRx-0, ...).
find_irqs() {
    local iface=$1 devpath="" devname="" msi="" virtio=""
    [[ -r /proc/interrupts ]] || return 0
    if [[ -e /sys/class/net/$iface/device ]]; then
        devpath=$(readlink -f "/sys/class/net/$iface/device")
        devname=${devpath##*/}
        if [[ -d $devpath/msi_irqs ]]; then
            msi=$(find "$devpath/msi_irqs" -mindepth 1 -maxdepth 1 -printf '%f ' 2>/dev/null || true)
        fi
        if [[ $devname =~ ^virtio[0-9]+$ ]]; then virtio=$devname; fi
    fi
    awk -v iface="$iface" -v msi="$msi" -v virtio="$virtio" '
        function is_token(s, t,    rest, p, off, before, after) {
            rest = s; off = 0
            while ((p = index(rest, t)) > 0) {
                before = (off + p == 1) ? "" : substr(s, off + p - 1, 1)
                after = substr(s, off + p + length(t), 1)
                if ((before == "" || before ~ /[-@: ]/) && (after == "" || after ~ /[-@: ]/)) return 1
                off += p; rest = substr(s, off + 1)
            }
            return 0
        }
        BEGIN { n = split(msi, v, " "); for (i = 1; i <= n; i++) is_msi[v[i]] = 1 }
        NR == 1 { ncpu = NF; next }
        $1 ~ /^[0-9]+:$/ {
            irq = substr($1, 1, length($1) - 1)
            # fields after the per-CPU counts: chip, hwirq/trigger, then the action name(s)
            names = ""
            for (i = ncpu + 2; i <= NF; i++) names = names (names == "" ? "" : " ") $i
            gsub(/,/, " ", names)
            hit = (irq in is_msi)
            if (!hit && virtio != "") {
                k = split(names, a, " ")
                for (j = 1; j <= k; j++)
                    if (index(a[j], virtio "-") == 1 && a[j] !~ /-config$/) hit = 1
            }
            if (!hit && is_token(names, iface)) hit = 1
            if (hit) { k = split(names, a, " "); print irq, a[k] }
        }' /proc/interrupts
}

# 1. IRQs ----------------------------------------------------------------------------------------
IRQ_LINES=()
mapfile -t IRQ_LINES < <(find_irqs "$IFACE")
PINNED=0
if ((${#IRQ_LINES[@]} == 0)); then
    echo "no IRQs found for $IFACE"
else
    echo "# IRQs of $IFACE, round-robin over CPUs $(compress_cpus "${IRQ[@]}"):"
    k=0
    for line in "${IRQ_LINES[@]}"; do
        irq=${line%% *}
        name=${line#* }
        if [[ ! -e /proc/irq/$irq/smp_affinity_list ]]; then
            warn "IRQ $irq ($name) has no /proc/irq/$irq/smp_affinity_list; skipped"
            continue
        fi
        apply_write "/proc/irq/$irq/smp_affinity_list" "${IRQ[k % ${#IRQ[@]}]}" "IRQ $irq $name"
        k=$((k + 1))
        PINNED=$((PINNED + 1))
    done
    if command -v pgrep >/dev/null 2>&1 && pgrep -x irqbalance >/dev/null 2>&1; then
        warn "irqbalance is running and will move these IRQs again: stop it (systemctl disable --now irqbalance)"
        warn "or keep it off the server CPUs (IRQBALANCE_BANNED_CPULIST=$(compress_cpus "${SERVER[@]}") in its config)"
    fi
fi
echo

# 2. RPS -----------------------------------------------------------------------------------------
RX_QUEUES=()
mapfile -t RX_QUEUES < <(find "/sys/class/net/$IFACE/queues/" -maxdepth 1 -name 'rx-*' 2>/dev/null | sort -V)
if ((${#RX_QUEUES[@]} == 0)); then
    echo "RPS: $IFACE has no rx queues in sysfs; skipped"
else
    if ((${#RX_QUEUES[@]} < ${#IRQ[@]})); then
        rps_mask=$(cpus_to_mask "${IRQ[@]}")
        echo "# RPS: ${#RX_QUEUES[@]} rx queue(s) < ${#IRQ[@]} IRQ CPUs: spread receive work over the IRQ CPUs"
    else
        rps_mask=0
        echo "# RPS: ${#RX_QUEUES[@]} rx queue(s) >= ${#IRQ[@]} IRQ CPUs: the pinned IRQs already spread it; RPS off"
    fi
    for q in "${RX_QUEUES[@]}"; do
        if [[ -e $q/rps_cpus ]]; then apply_write "$q/rps_cpus" "$rps_mask"; fi
    done
fi
echo

# 3. XPS -----------------------------------------------------------------------------------------
TX_QUEUES=()
mapfile -t TX_QUEUES < <(find "/sys/class/net/$IFACE/queues/" -maxdepth 1 -name 'tx-*' 2>/dev/null | sort -V)
if ((${#TX_QUEUES[@]} < 2)); then
    echo "XPS: $IFACE has ${#TX_QUEUES[@]} tx queue(s): nothing to map"
elif [[ ! -e ${TX_QUEUES[0]}/xps_cpus ]]; then
    echo "XPS: $IFACE has no xps_cpus files (kernel without CONFIG_XPS?); skipped"
else
    echo "# XPS: every online CPU sends on one tx queue, CPUs dealt round-robin over ${#TX_QUEUES[@]} queues"
    for ((qi = 0; qi < ${#TX_QUEUES[@]}; qi++)); do
        mine=()
        for ((ci = qi; ci < ${#ONLINE[@]}; ci += ${#TX_QUEUES[@]})); do mine+=("${ONLINE[ci]}"); done
        apply_write "${TX_QUEUES[qi]}/xps_cpus" "$(cpus_to_mask "${mine[@]}")" "CPUs $(compress_cpus "${mine[@]}")"
    done
fi

# 4. load generator ------------------------------------------------------------------------------
PIDS=()
if [[ -n $LOADGEN_PIDS ]]; then
    [[ $LOADGEN_PIDS =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--loadgen-pids wants comma-separated PIDs, got '$LOADGEN_PIDS'"
    IFS=, read -r -a PIDS <<<"$LOADGEN_PIDS"
fi
if [[ -n $LOADGEN_NAME ]]; then
    mapfile -t -O "${#PIDS[@]}" PIDS < <(pgrep -x -- "$LOADGEN_NAME" || true)
    if ((${#PIDS[@]} == 0)); then echo "load generator: no process named $LOADGEN_NAME"; fi
fi
if ((${#PIDS[@]} > 0)); then
    mapfile -t PIDS < <(printf '%s\n' "${PIDS[@]}" | sort -n -u)
    echo
    command -v taskset >/dev/null 2>&1 || die "taskset (util-linux) is needed to pin the load generator"
    lg=$(compress_cpus "${LOADGEN[@]}")
    echo "# load generator on CPUs $lg (off the server CPUs)"
    for pid in "${PIDS[@]}"; do
        if [[ ! -d /proc/$pid ]]; then
            warn "no process $pid; skipped"
            continue
        fi
        if ((DRY_RUN)); then
            echo "would run taskset -a -p -c $lg $pid   ($(cat "/proc/$pid/comm" 2>/dev/null || echo '?'))"
        elif taskset -a -p -c "$lg" "$pid" >/dev/null; then
            echo "ran taskset -a -p -c $lg $pid"
            CHANGES=$((CHANGES + 1))
        else
            warn "taskset failed for PID $pid"
            FAILED=$((FAILED + 1))
        fi
    done
fi

echo
if ((DRY_RUN)); then
    echo "dry run: $PINNED IRQ(s) found for $IFACE; nothing was changed"
else
    echo "done: $CHANGES change(s), $FAILED refused; not persistent across reboot or driver reload"
fi
if ((FAILED > 0)); then exit 1; fi
exit 0
