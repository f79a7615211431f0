# Loopback ports for the bench scripts that start their own server
# (sourced, not run): a free port, and waiting until one accepts.

# A free loopback port (bound and released by the kernel's choice).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits up to 10 s for 127.0.0.1:$1 to accept; gives up at once when the
# server started as $server_pid (if set) has exited.
wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        if [ -n "${server_pid:-}" ] && ! kill -0 "$server_pid" 2>/dev/null; then
            echo "the server exited before port $1 opened" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "port $1 never opened" >&2
    return 1
}
