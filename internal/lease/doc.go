// Package lease gives one holder at a time a named lease over the shared
// store.Objects ("one db builder per repo/arch", "a job claimed by one
// worker"): taken and renewed by conditional writes, judged expired by
// each node's clock against the time in the lease plus Options.Skew, and
// taken over once its holder stops renewing it. It guards that at most
// one holder believes it holds a lease at a time, while clocks differ by
// less than Skew. It does not stop a holder paused past expiry (a GC
// pause, a frozen VM) from writing after it wakes: writers that must not
// be stale carry Lease.Token, a fencing token that grows with every
// holder, and whoever checks their writes refuses a lower one.
// It must not know what the leases are for.
package lease
