// Package config loads mirrord's configuration: defaults, a YAML file, the
// environment (MIRRORD_SECTION_KEY) and command-line flags, in rising order
// of precedence, into one typed Config that Validate checks as a whole.
//
// Config is data: it holds no locks and no runtime state. Components take
// the parts they need from it in cmd/mirrord.
package config
