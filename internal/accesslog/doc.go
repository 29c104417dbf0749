// Package accesslog writes one line per HTTP request, who asked for what
// and how it went, in the format of the process's log (slog's text or
// JSON lines), buffered.
//
// A line is formatted by hand, not by slog: slog's handlers spend about
// 1.5 µs on a line of nine attributes, a sixth of a fast-path hit, and
// write each line with a syscall of its own, on the caller's goroutine
// (one of the fast path's event loops). Lines collect in a buffer that a
// goroutine of the Logger's writes when it fills and every FlushEvery,
// so the log costs a hit a few hundred nanoseconds.
package accesslog
