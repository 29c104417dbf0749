// Package s3test starts a real S3 server for tests: SeaweedFS's
// `weed mini` on loopback ports, with a bucket and an access key, stopped
// when the test ends. The binary is built once by scripts/seaweedfs.sh.
//
// Only tests import it.
package s3test
