package config

import (
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultLayout is every distro's layout unless it names its own: Arch
// Linux's, which most pacman distros copy.
const DefaultLayout = "$repo/os/$arch"

// defaultArch is every distro's arch list unless it names its own.
func defaultArch() []string { return []string{"x86_64"} }

// readFile parses the config file into the distros section as written
// (nil when there is none) and the rest, for viper. Viper lowercases every
// map key it holds, so the distros, whose keys are distro and repo names,
// must not go through it: pacman's [MyRepo] asks for MyRepo.db.
func readFile(path string) (rest map[string]any, distros *yaml.Node, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, err
	}
	if len(doc.Content) == 0 {
		return nil, nil, nil // empty, or only comments
	}
	// Decoding the whole file first reports duplicate keys and a top
	// level that is not a mapping, anywhere, with their line.
	if err := doc.Decode(&rest); err != nil {
		return nil, nil, err
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return rest, nil, nil // null: no keys at all
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if !strings.EqualFold(top.Content[i].Value, "distros") {
			continue
		}
		if distros != nil {
			return nil, nil, fmt.Errorf("line %d: distros is given twice", top.Content[i].Line)
		}
		distros = resolve(top.Content[i+1])
		delete(rest, top.Content[i].Value)
	}
	if isNull(distros) {
		distros = nil
	}
	return rest, distros, nil
}

// resolve follows YAML aliases (*name) to the node they stand for.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// decodeDistros decodes the file's distros section, each name exactly as
// written, and fills in what a distro leaves out: layout $repo/os/$arch
// and arch [x86_64] for every distro, and for "archlinux" the mirrors and
// repos of DefaultDistros. sources records each value filled in.
func decodeDistros(n *yaml.Node, sources map[string]string) (map[string]Distro, []error) {
	if n.Kind != yaml.MappingNode {
		return nil, []error{fmt.Errorf("distros: line %d: must be a mapping of distro names to distros", n.Line)}
	}
	var errs []error
	out := map[string]Distro{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name, key := n.Content[i].Value, "distros."+n.Content[i].Value
		fields, repos, err := split(resolve(n.Content[i+1]), "repos")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		var d Distro
		errs = append(errs, decode(fields, &d, key)...)
		if repos != nil {
			if repos.Kind != yaml.MappingNode {
				errs = append(errs, fmt.Errorf("%s.repos: line %d: must be a mapping of repo names to repos", key, repos.Line))
				continue
			}
			d.Repos = map[string]Repo{}
			for j := 0; j+1 < len(repos.Content); j += 2 {
				rname, rkey := repos.Content[j].Value, key+".repos."+repos.Content[j].Value
				rfields, _, err := split(resolve(repos.Content[j+1]), "")
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", rkey, err))
					continue
				}
				var r Repo
				errs = append(errs, decode(rfields, &r, rkey)...)
				d.Repos[rname] = r
			}
		}
		given := func(field string) bool {
			for k, v := range fields {
				if strings.EqualFold(k, field) && v != nil {
					return true
				}
			}
			return false
		}
		fill := func(field string, set func()) {
			if !given(field) {
				set()
				sources[key+"."+field] = sourceDefault
			}
		}
		fill("layout", func() { d.Layout = DefaultLayout })
		fill("arch", func() { d.Arch = defaultArch() })
		if name == "archlinux" {
			// Only a list of its own (upstreams, or an upstreams_file)
			// replaces Arch's mirrors, and only repos of its own replace
			// core, extra, multilib and custom.
			arch := DefaultDistros()["archlinux"]
			if !given("upstreams_file") {
				fill("upstreams", func() { d.Upstreams = arch.Upstreams })
			}
			if repos == nil {
				d.Repos = arch.Repos
				sources[key+".repos"] = sourceDefault
			}
		}
		out[name] = d
	}
	return out, errs
}

// split decodes a mapping node into its fields, all but the one named
// sub (matched as mapstructure matches fields: any case), whose node it
// returns apart, nil when absent or null. A null node has no fields.
func split(n *yaml.Node, sub string) (fields map[string]any, subNode *yaml.Node, err error) {
	if err := n.Decode(&fields); err != nil {
		return nil, nil, err
	}
	if n.Kind != yaml.MappingNode {
		return fields, nil, nil
	}
	for i := 0; sub != "" && i+1 < len(n.Content); i += 2 {
		if strings.EqualFold(n.Content[i].Value, sub) {
			if subNode = resolve(n.Content[i+1]); isNull(subNode) {
				subNode = nil
			}
			delete(fields, n.Content[i].Value)
		}
	}
	return fields, subNode, nil
}
