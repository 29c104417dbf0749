package main

import (
	"github.com/mirrord/mirrord/internal/fetch"
	"github.com/mirrord/mirrord/internal/proxy"
	"github.com/mirrord/mirrord/internal/web"
)

// trafficSource is the web UI's TrafficSource: the proxy's request counts and
// the fetcher's bytes. Here, so that web needs neither package.
type trafficSource struct {
	requests *proxy.Metrics
	fetcher  *fetch.Fetcher
}

func (t trafficSource) Traffic() web.Traffic {
	c := t.requests.Counts()
	return web.Traffic{Requests: c.Answered, Hits: c.Hits, Coalesced: c.Coalesced,
		Served: c.ServedBytes, Fetched: t.fetcher.FetchedBytes(), InflightReaders: c.InflightReaders}
}
