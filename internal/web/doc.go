// Package web is mirrord's HTML side: a UI at / (repos, package search,
// package pages, publish jobs, cache status) and a directory index for
// every folder of the tree, like a public mirror's.
//
// It reads repos and packages only through internal/api's Go functions, the
// ones the JSON API answers with, so that the UI and the API never disagree.
// Pages are server-rendered html/template with embedded CSS: no JavaScript,
// no external requests.
package web
