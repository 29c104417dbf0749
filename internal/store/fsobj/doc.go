// Package fsobj is the filesystem backend of store.Objects: the tree
// under {dir}/tree, today's layout, each object a file written into
// {dir}/tmp, fsynced and renamed into place (so a file in the tree is
// complete), its metadata in an extended attribute of the file itself, so
// that it is committed by the same rename as the bytes.
//
// It must not know what the files are (that is the store's and its
// callers'); it only keeps bytes and their metadata.
package fsobj
