//go:build race

package proxy

// raceEnabled shrinks the big transfers: the race detector slows every
// byte copied through instrumented code some twenty times.
const raceEnabled = true
