// Package prefetch keeps the packages a LAN uses fresh in proxy repos
// (cache.prefetch): the proxy tells it which package files clients get
// (Requested, on the hit path); when a proxy repo's database changes, it
// fetches the newer version of each name asked for within
// cache.prefetch_horizon through the flights the proxy shares, so that a
// client asking meanwhile joins the download. Its record of requests is
// kept in the store's key-value state under "prefetch/".
//
// It writes the tree only through the Fetcher, serves no HTTP, and never
// touches mirror or hosted repos.
package prefetch
