// Package cluster makes several mirrord nodes one cache (cluster: in the
// config): every file has one owner among the live nodes, chosen by
// rendezvous hashing of its tree path, and a node that misses a file it
// does not own fetches it from the owner over the peer route, so that a
// file is fetched from upstream once however a load balancer spreads the
// clients. Nodes check each other's /readyz; one that fails drops out and
// its files move to the next node in hash order.
//
// The peer route (PeerPath) takes only requests that carry the cluster's
// secret, and a request that came over it is never sent on to another
// node (FromPeer), so two nodes that disagree about who is alive cost one
// hop more at most, never a loop.
package cluster
