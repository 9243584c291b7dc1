package events

import (
	"fmt"
	"regexp"
)

var (
	nameRE         = regexp.MustCompile(`^[A-Za-z0-9_.\-:]+$`)
	silencedNameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-:*]+$`)
)

// problems collects FieldErrors while a Validate method runs.
type problems []FieldError

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// err returns nil when nothing was found, so Validate never returns a typed nil.
func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return ValidationError(p)
}

// name checks a required resource name against re.
func (p *problems) name(field, value string, re *regexp.Regexp) {
	switch {
	case value == "":
		p.add(field, "required; set a name made of letters, digits, '_', '.', '-' or ':'")
	case !re.MatchString(value):
		p.add(field, "%q is not a valid name; use only letters, digits, '_', '.', '-' or ':'", value)
	}
}

// meta checks a namespaced resource's metadata: a valid name and, when set, a valid
// namespace.
func (p *problems) meta(prefix string, m ObjectMeta) {
	p.name(prefix+"metadata.name", m.Name, nameRE)
	p.namespace(prefix, m)
}

func (p *problems) namespace(prefix string, m ObjectMeta) {
	if m.Namespace != "" && !nameRE.MatchString(m.Namespace) {
		p.add(prefix+"metadata.namespace", "%q is not a valid namespace name; use only letters, digits, '_', '.', '-' or ':'", m.Namespace)
	}
}

// nonNegative checks a number of seconds that may be zero.
func (p *problems) nonNegative(field string, v int64) {
	if v < 0 {
		p.add(field, "must be zero or a positive number of seconds (got %d)", v)
	}
}

// nonEmptyItems reports empty strings in a list, which are always mistakes.
func (p *problems) nonEmptyItems(field string, items []string) {
	for i, s := range items {
		if s == "" {
			p.add(fmt.Sprintf("%s[%d]", field, i), "empty value; remove it or fill it in")
		}
	}
}
