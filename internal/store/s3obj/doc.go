// Package s3obj is the S3 backend of store.Objects, over minio-go against
// any S3-compatible store. The bucket holds the tree's layout under an
// optional prefix ({prefix}/{distro}/{layout}/{file}), so it is itself a
// valid mirror for a static web server or a CDN; an object's sha256 and
// upstream validators are in its user metadata.
//
// It must not know what the files are; it only keeps bytes and their
// metadata. Only this package imports minio-go.
package s3obj
