// Package prefetch keeps the packages a LAN uses fresh in proxy repos
// (cache.prefetch): the proxy tells it which package files clients get
// (Requested, on the hit path), and when a proxy repo's database changes
// it fetches the newer version of each name asked for within
// cache.prefetch_horizon, through the flights the proxy shares, so that a
// client asking meanwhile joins the download and the next pacman -Syu is
// all hits. What was asked for survives restarts in the store's
// key-value state under "prefetch/".
//
// It brings files into the tree only through the Fetcher; it never serves
// HTTP, evicts, or touches mirror and hosted repos.
package prefetch
