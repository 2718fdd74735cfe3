package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds what Load reads: a configuration is a few kilobytes.
const maxFileSize = 1 << 20

// Load reads and parses the file at path. Errors start with "config <path>: ".
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError(path, 0, "cannot open the file: "+pathErrText(err)+"; check the path given with -c")
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fileError(path, 0, "is a directory; give the path of the YAML configuration file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fileError(path, 0, "cannot read the file: "+pathErrText(err))
	}
	if len(data) > maxFileSize {
		return nil, fileError(path, 0, "the file is larger than 1 MiB; is this the right file?")
	}
	return Parse(data, path)
}

// pathErrText drops the operation and path from an *fs.PathError, which the
// message already names.
func pathErrText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// recoverPanics turns a panic inside Parse into an error; the fuzz test turns
// it off so that a panic is found rather than hidden.
var recoverPanics = true

// onDecodeFallback, when set (by tests), is called when the strict decoder
// refused a document that the key checker had accepted: the two disagree,
// and the message came from rewriting yaml.v3's own text.
var onDecodeFallback func(error)

// Parse decodes data strictly, fills defaults, validates. source names the file in errors.
func Parse(data []byte, source string) (cfg *Config, err error) {
	if recoverPanics {
		defer func() {
			if r := recover(); r != nil {
				cfg = nil
				err = fileError(source, 0, fmt.Sprintf("cannot parse the file (internal error: %v); please report this with the file", r))
			}
		}()
	}
	if line, text := checkText(data); text != "" {
		return nil, fileError(source, line, text)
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fileError(source, 0, "the file is empty; write the configuration in YAML (see deploy/ for an example)")
		}
		return nil, syntaxError(source, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fileError(source, extra.Line, "a second YAML document starts here; keep the configuration in one document (remove the \"---\" line)")
	} else if !errors.Is(err, io.EOF) {
		return nil, syntaxError(source, data, err)
	}

	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) != 1 {
			return nil, fileError(source, 0, "the file is empty; write the configuration in YAML (see deploy/ for an example)")
		}
		root = root.Content[0]
	}
	if isNull(root) {
		return nil, fileError(source, 0, "the file holds no settings; write the configuration in YAML (see deploy/ for an example)")
	}
	if root.Kind != yaml.MappingNode {
		return nil, fileError(source, root.Line, "the top level must be a mapping of keys (cluster: ..., name: ...), got "+nodeKind(root))
	}

	if tag := customTag(root); tag != "" {
		return nil, fileError(source, root.Line, fmt.Sprintf("the YAML tag %s is not supported here; remove it", quoteValue(tag)))
	}

	ck := newChecker()
	ck.mapping(root, configType, "")

	cfg = &Config{}
	if len(ck.issues) == 0 {
		d := yaml.NewDecoder(bytes.NewReader(data))
		d.KnownFields(true)
		if err := d.Decode(cfg); err != nil {
			if onDecodeFallback != nil {
				onDecodeFallback(err)
			}
			return nil, newError(source, ck.rewrite(err))
		}
	} else {
		// The checker removed every bad key and value from the tree: decode
		// what is left, so that problems elsewhere are reported too.
		if err := doc.Decode(cfg); err != nil {
			return nil, newError(source, ck.issues)
		}
	}
	cfg.normalize()
	cfg.fill(ck.present)

	issues := ck.issues
	for _, is := range cfg.validate(ck.lines) {
		if !ck.reported(is.Key) {
			issues = append(issues, is)
		}
	}
	if err := newError(source, issues); err != nil {
		return nil, err
	}
	return cfg, nil
}

// normalize makes empty lists and maps nil, so that a parsed Config compares
// equal to one built in code.
func (c *Config) normalize() {
	if len(c.Tags) == 0 {
		c.Tags = nil
	}
	if len(c.Join) == 0 {
		c.Join = nil
	}
	if p := c.Postgres; p != nil {
		if len(p.AllowedNetworks) == 0 {
			p.AllowedNetworks = nil
		}
		if len(p.Parameters) == 0 {
			p.Parameters = nil
		}
		if len(p.HBA) == 0 {
			p.HBA = nil
		}
	}
}

// checkText refuses data that is not UTF-8 text made of characters YAML
// allows, naming the line; yaml.v3 would say so without one.
func checkText(data []byte) (int, string) {
	line := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return line, fmt.Sprintf("the file is not UTF-8 text (byte 0x%02x); is this the right file?", data[i])
		case r == '\n':
			line++
		case r == '\t' || r == '\r' || r == 0x85 || r == 0xFEFF:
		case r < 0x20 || (r >= 0x7F && r <= 0x9F) || r == 0xFFFE || r == 0xFFFF:
			return line, fmt.Sprintf("the file holds the control character %U, which YAML does not allow; is this the right file?", r)
		}
		i += size
	}
	return 0, ""
}

var (
	yamlLineRE      = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)
	unknownAnchorRE = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)
)

// syntaxError rewrites a yaml.v3 parser error, keeping its line.
func syntaxError(source string, data []byte, err error) error {
	msg := err.Error()
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	text := "invalid YAML: " + msg
	if m := unknownAnchorRE.FindStringSubmatch(msg); m != nil {
		if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 && line == 0 {
			line = 1 + bytes.Count(data[:i], []byte("\n"))
		}
		return fileError(source, line, text+"; define the anchor (&"+m[1]+") before the alias (*"+m[1]+") that uses it")
	}
	if line == 0 {
		// yaml.v3 leaves the line out when the parser stopped on the
		// first line (its marks count from 0).
		line = 1
	}
	switch {
	case hasTabIndent(data, line):
		text += "; indent with spaces: YAML does not allow tabs for indentation"
	case strings.Contains(msg, "end of stream") || strings.Contains(msg, "find expected"):
		text += "; check for an unclosed quote or bracket, or a key at the wrong indentation"
	case strings.Contains(msg, "mapping values are not allowed"):
		text += "; check the indentation, and quote values that contain \": \""
	default:
		text += "; check the YAML syntax on this line and the one before"
	}
	return fileError(source, line, text)
}

// hasTabIndent reports whether a tab appears in the indentation of the given
// line or the lines next to it (yaml.v3's line can be off by one).
func hasTabIndent(data []byte, line int) bool {
	lines := strings.Split(string(data), "\n")
	for l := line - 1; l <= line+1; l++ {
		if l < 1 || l > len(lines) {
			continue
		}
		s := lines[l-1]
		indent := s[:len(s)-len(strings.TrimLeft(s, " \t"))]
		if strings.Contains(indent, "\t") {
			return true
		}
	}
	return false
}

// A field of a configuration struct, as the file spells it.
type field struct {
	name  string
	index int
	typ   reflect.Type
}

var (
	configType   = reflect.TypeOf(Config{})
	durationType = reflect.TypeOf(Duration(0))
	byteSizeType = reflect.TypeOf(ByteSize(0))
)

// fieldsOf lists the YAML keys of a struct type, in declaration order.
func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		out = append(out, field{name: name, index: i, typ: f.Type})
	}
	return out
}

// allKeys maps every key name used anywhere in the schema to its dotted
// paths, to point at the right section when a key is in the wrong one.
var allKeys = func() map[string][]string {
	m := map[string][]string{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for _, f := range fieldsOf(t) {
			path := joinKey(prefix, f.name)
			m[f.name] = append(m[f.name], path)
			ft := f.typ
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				walk(ft, path)
			}
		}
	}
	walk(configType, "")
	return m
}()

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func itemKey(key string, i int) string { return key + "[" + strconv.Itoa(i) + "]" }

// checker walks the document against the Config types before decoding. It
// reports every unknown key, duplicate key and value of the wrong type with
// its dotted path and line, removes them from the tree, and records where
// each key is and which keys are present (for defaults that apply only when a
// key is absent).
type checker struct {
	issues  []Issue
	lines   map[string]int  // key path (list items as key[i]) -> line
	present map[string]bool // key path -> given with a non-null value
	bad     map[string]bool // key paths with a reported problem
	onLine  map[int][]string
}

func newChecker() *checker {
	return &checker{
		lines:   map[string]int{},
		present: map[string]bool{},
		bad:     map[string]bool{},
		onLine:  map[int][]string{},
	}
}

func (k *checker) add(line int, key, text string) {
	k.issues = append(k.issues, Issue{Line: line, Key: key, Text: text})
	if key != "" {
		k.bad[key] = true
	}
}

// reported tells whether key, or a section holding it, already has a
// problem reported; a later check on it would only repeat that.
func (k *checker) reported(key string) bool {
	for key != "" {
		if k.bad[key] {
			return true
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return false
		}
		key = key[:i]
	}
	return false
}

func (k *checker) record(line int, key string) {
	k.lines[key] = line
	k.onLine[line] = append(k.onLine[line], key)
}

// deref follows an alias to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// customTag returns a non-standard tag ("!foo") given on the node, if any.
func customTag(n *yaml.Node) string {
	if n.Style&yaml.TaggedStyle != 0 && !strings.HasPrefix(n.Tag, "!!") && !strings.HasPrefix(n.Tag, "tag:yaml.org,2002:") {
		return n.Tag
	}
	return ""
}

// mapping checks a mapping node against struct type t (the section at
// prefix), removing bad pairs.
func (k *checker) mapping(n *yaml.Node, t reflect.Type, prefix string) {
	fields := fieldsOf(t)
	seen := map[string]int{}
	kept := n.Content[:0:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := deref(n.Content[i]), deref(n.Content[i+1])
		if kn == nil || vn == nil {
			continue
		}
		if kn.Kind != yaml.ScalarNode {
			k.add(kn.Line, prefix, inSection(prefix, "a key must be a plain name, got "+nodeKind(kn)+"; write keys as name: value"))
			continue
		}
		if kn.ShortTag() == "!!merge" {
			k.add(kn.Line, prefix, inSection(prefix, "YAML merge keys (<<) are not supported; write the keys out"))
			continue
		}
		key := joinKey(prefix, kn.Value)
		if first, dup := seen[kn.Value]; dup {
			k.add(kn.Line, key, keyText(key, fmt.Sprintf("given twice (first at line %d); keep one", first)))
			continue
		}
		seen[kn.Value] = kn.Line
		var f *field
		for j := range fields {
			if fields[j].name == kn.Value {
				f = &fields[j]
			}
		}
		if f == nil {
			k.add(kn.Line, key, unknownKeyText(key, kn.Value, prefix, fields))
			continue
		}
		k.record(kn.Line, key)
		if tag := customTag(vn); tag != "" {
			k.add(vn.Line, key, keyText(key, fmt.Sprintf("the YAML tag %s is not supported here; remove it", quoteValue(tag))))
			continue
		}
		if !k.value(vn, f.typ, key) {
			continue
		}
		if !isNull(vn) {
			k.present[key] = true
		}
		kept = append(kept, n.Content[i], n.Content[i+1])
	}
	n.Content = kept
}

// inSection starts a message about the section at prefix (the whole file
// when prefix is "").
func inSection(prefix, text string) string {
	if prefix == "" {
		return text
	}
	return keyText(prefix, text)
}

// unknownKeyText says that key is not known and which keys are, with a
// did-you-mean when one is close.
func unknownKeyText(key, name, prefix string, fields []field) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	where := "valid top-level keys"
	if prefix != "" {
		where = "valid keys in " + prefix
	}
	hint := ""
	if s := closest(name, names); s != "" {
		hint = fmt.Sprintf("did you mean %q? ", s)
	} else if paths := allKeys[name]; len(paths) > 0 {
		q := make([]string, len(paths))
		for i, p := range paths {
			q[i] = strconv.Quote(p)
		}
		hint = "did you mean " + strings.Join(q, " or ") + "? "
	}
	return fmt.Sprintf("unknown key %s (%s%s: %s)", quoteValue(key), hint, where, strings.Join(names, ", "))
}

// closest returns the candidate nearest to s within an edit distance of 2,
// or "".
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	ls := strings.ToLower(s)
	if len(ls) > 64 {
		return ""
	}
	for _, c := range candidates {
		if d := EditDistance(ls, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// EditDistance is the Levenshtein distance between a and b, by bytes.
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// value checks one value against the Go type it decodes into; it reports
// and returns false when the value cannot be decoded.
func (k *checker) value(n *yaml.Node, t reflect.Type, key string) bool {
	if isNull(n) {
		return true
	}
	wrong := func(expected string) bool {
		k.add(n.Line, key, keyText(key, "expected "+expected+", got "+nodeKind(n)))
		return false
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			return wrong(`a duration such as "4s"`)
		}
		if _, msg := parseDuration(n.Value); msg != "" {
			k.add(n.Line, key, keyText(key, msg))
			return false
		}
		return true
	case t == byteSizeType:
		if n.Kind != yaml.ScalarNode {
			return wrong(`a size such as "16MB"`)
		}
		if _, msg := parseByteSize(n.Value); msg != "" {
			k.add(n.Line, key, keyText(key, msg))
			return false
		}
		return true
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		return k.value(n, t.Elem(), key)
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return wrong("a mapping (the keys under " + key + ")")
		}
		k.mapping(n, t, key)
		return true
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		if n.Kind != yaml.SequenceNode {
			return wrong(`a list (one "- item" per line)`)
		}
		ok, i := true, 0
		for _, item := range n.Content {
			item = deref(item)
			if isNull(item) {
				continue // yaml.v3 leaves null items out of the list
			}
			k.record(item.Line, itemKey(key, i))
			i++
			if !k.scalar(item, reflect.TypeOf(""), key, "a string", "in the list") {
				ok = false
			}
		}
		return ok
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String:
		if n.Kind != yaml.MappingNode {
			return wrong("a mapping of name: value")
		}
		ok := true
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := deref(n.Content[i]), deref(n.Content[i+1])
			if kn == nil || vn == nil {
				continue
			}
			if kn.Kind != yaml.ScalarNode || kn.ShortTag() == "!!merge" {
				k.add(kn.Line, key, keyText(key, "expected plain names as keys, got "+nodeKind(kn)))
				ok = false
				continue
			}
			ek := joinKey(key, kn.Value)
			if first, dup := seen[kn.Value]; dup {
				k.add(kn.Line, ek, keyText(ek, fmt.Sprintf("given twice (first at line %d); keep one", first)))
				ok = false
				continue
			}
			seen[kn.Value] = kn.Line
			k.record(kn.Line, ek)
			if isNull(vn) {
				k.add(vn.Line, ek, keyText(ek, "has no value; give one or remove the key"))
				ok = false
				continue
			}
			if !k.scalar(vn, reflect.TypeOf(""), ek, "a string or number", "") {
				ok = false
			}
		}
		return ok
	case t.Kind() == reflect.String:
		return k.scalar(n, t, key, "a string", "")
	case t.Kind() == reflect.Int:
		return k.scalar(n, t, key, "an integer", "")
	case t.Kind() == reflect.Uint64:
		return k.scalar(n, t, key, "a whole number (0 or more)", "")
	case t.Kind() == reflect.Bool:
		return k.scalar(n, t, key, "true or false", "")
	}
	return wrong("a value of type " + t.String())
}

// scalar checks that n is a scalar that yaml.v3 decodes into type t.
func (k *checker) scalar(n *yaml.Node, t reflect.Type, key, expected, where string) bool {
	if where != "" {
		where = " " + where
	}
	bad := func() bool {
		k.add(n.Line, key, keyText(key, "expected "+expected+where+", got "+nodeKind(n)))
		return false
	}
	if tag := customTag(n); tag != "" {
		k.add(n.Line, key, keyText(key, fmt.Sprintf("the YAML tag %s is not supported here; remove it", quoteValue(tag))))
		return false
	}
	if n.Kind != yaml.ScalarNode {
		return bad()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Uint64:
		// yaml.v3 would truncate 1.5 to 1; only integers are accepted.
		if n.ShortTag() != "!!int" {
			return bad()
		}
	}
	v := reflect.New(t)
	if err := n.Decode(v.Interface()); err != nil {
		if t.Kind() == reflect.Int || t.Kind() == reflect.Uint64 {
			if strings.HasPrefix(strings.TrimSpace(n.Value), "-") && t.Kind() == reflect.Uint64 {
				return bad()
			}
			k.add(n.Line, key, keyText(key, fmt.Sprintf("%s is out of range for %s", quoteValue(n.Value), expected)))
			return false
		}
		return bad()
	}
	return true
}

var (
	notFoundRE   = regexp.MustCompile(`^line ([0-9]+): field (.*) not found in type (.*)$`)
	definedRE    = regexp.MustCompile(`^line ([0-9]+): mapping key "(.*)" already defined at line ([0-9]+)$`)
	typeErrLine  = regexp.MustCompile(`^line ([0-9]+): (.*)$`)
	yamlPrefixRE = regexp.MustCompile(`^yaml: (line ([0-9]+): )?(.*)$`)
)

// rewrite turns an error from yaml.v3's strict decoder into issues naming
// the key and its line. It is only needed when the checker let through
// something the decoder refused.
func (k *checker) rewrite(err error) []Issue {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		m := yamlPrefixRE.FindStringSubmatch(err.Error())
		if m == nil {
			return []Issue{{Text: "cannot decode the file: " + err.Error()}}
		}
		line, _ := strconv.Atoi(m[2])
		return []Issue{{Line: line, Key: k.keyOn(line, ""), Text: k.withKey(line, "cannot decode this value: "+m[3])}}
	}
	var out []Issue
	for _, e := range te.Errors {
		if m := notFoundRE.FindStringSubmatch(e); m != nil {
			line, _ := strconv.Atoi(m[1])
			prefix := ""
			key := k.keyOn(line, m[2])
			if i := strings.LastIndex(key, "."); i >= 0 {
				prefix = key[:i]
			}
			fields := fieldsOf(sectionType(prefix))
			out = append(out, Issue{Line: line, Key: key, Text: unknownKeyText(joinKey(prefix, m[2]), m[2], prefix, fields)})
			continue
		}
		if m := definedRE.FindStringSubmatch(e); m != nil {
			line, _ := strconv.Atoi(m[1])
			key := k.keyOn(line, m[2])
			out = append(out, Issue{Line: line, Key: key, Text: keyText(key, "given twice (first at line "+m[3]+"); keep one")})
			continue
		}
		if m := typeErrLine.FindStringSubmatch(e); m != nil {
			line, _ := strconv.Atoi(m[1])
			out = append(out, Issue{Line: line, Key: k.keyOn(line, ""), Text: k.withKey(line, m[2])})
			continue
		}
		out = append(out, Issue{Text: e})
	}
	return out
}

// keyOn returns the path of the key on line (ending in name when given).
func (k *checker) keyOn(line int, name string) string {
	keys := k.onLine[line]
	for _, key := range keys {
		if name == "" || key == name || strings.HasSuffix(key, "."+name) {
			return key
		}
	}
	if name != "" {
		return name
	}
	return ""
}

func (k *checker) withKey(line int, text string) string {
	if key := k.keyOn(line, ""); key != "" {
		return keyText(key, text)
	}
	return text
}

// sectionType returns the struct type of the section at a dotted path.
func sectionType(prefix string) reflect.Type {
	t := configType
	if prefix == "" {
		return t
	}
	for _, part := range strings.Split(prefix, ".") {
		found := false
		for _, f := range fieldsOf(t) {
			if f.name == part {
				ft := f.typ
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					t, found = ft, true
				}
			}
		}
		if !found {
			return configType
		}
	}
	return t
}

// GivenKeys lists the dotted key paths a config file gives with a value
// ("timing.lease", "synchronous"), so that a check of cluster-wide keys
// against the replicated configuration names only what the file says, not
// the defaults. A file that does not parse gives none.
func GivenKeys(data []byte) map[string]bool {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return map[string]bool{}
	}
	root := deref(doc.Content[0])
	if root == nil || root.Kind != yaml.MappingNode {
		return map[string]bool{}
	}
	ck := newChecker()
	ck.mapping(root, configType, "")
	return ck.present
}
