package render

// AwaitSystemd starts every script the operator runs in a member: for a
// container that has just been started, it waits (up to 10 s) until
// systemd takes requests, so that the pass right after the start can
// configure the member instead of failing and looking again later.
const AwaitSystemd = `for i in $(seq 200); do [ -S /run/systemd/private ] && break; sleep 0.05; done; `
