//go:build race

package fastpath

// raceEnabled: the race detector is on. The raw socket calls (see
// sockWrite) then go through package syscall, whose Read and Write tell
// the detector that I/O orders what a client wrote before a server
// read, as it does for every other Go server.
const raceEnabled = true
