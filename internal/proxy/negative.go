package proxy

import (
	stdsync "sync"
	"time"
)

// negativeCache remembers upstream 404s for a few seconds: pacman asks for
// .sig files that many repos do not have, and each ask must stay cheap.
type negativeCache struct{ m stdsync.Map } // tree path -> expiry (time.Time)

func (n *negativeCache) add(rel string, ttl time.Duration) {
	if ttl > 0 {
		n.m.Store(rel, time.Now().Add(ttl))
	}
}

func (n *negativeCache) has(rel string) bool {
	v, ok := n.m.Load(rel)
	if !ok {
		return false
	}
	if time.Now().After(v.(time.Time)) {
		n.m.CompareAndDelete(rel, v)
		return false
	}
	return true
}
