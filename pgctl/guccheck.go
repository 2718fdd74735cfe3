package pgctl

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SettingProblem is a value the instance would refuse, in Postgres's words.
type SettingProblem struct {
	Name, Reason string
}

// settingInfo is one row of pg_settings.
type settingInfo struct {
	vartype, unit, minVal, maxVal, context string
	enumvals                               []string
}

// CheckSettings asks the running instance whether it would accept each
// value (postgresql.conf form), without changing anything: settings a
// session may set are tried with set_config in a transaction that is
// rolled back (Postgres's own message when it refuses); the others are
// checked against pg_settings (vartype, min_val, max_val, enumvals, unit).
// An unknown name is refused unless it is a custom "module.name" setting.
// restart lists the accepted ones that take effect only after a restart
// (context postmaster).
func (c *Controller) CheckSettings(ctx context.Context, settings map[string]string) (problems []SettingProblem, restart []string, err error) {
	err = c.withConn(ctx, true, func(conn *pgx.Conn) error {
		problems, restart = nil, nil
		for _, name := range slices.Sorted(maps.Keys(settings)) {
			value := settings[name]
			var si settingInfo
			err := conn.QueryRow(ctx, `SELECT vartype, coalesce(unit, ''), coalesce(min_val, ''), coalesce(max_val, ''),
				context, coalesce(enumvals, '{}') FROM pg_settings WHERE name = $1`, name).
				Scan(&si.vartype, &si.unit, &si.minVal, &si.maxVal, &si.context, &si.enumvals)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				if !strings.Contains(name, ".") {
					problems = append(problems, SettingProblem{name, fmt.Sprintf("unrecognized configuration parameter %q", name)})
				}
				continue
			case err != nil:
				return err
			}
			var reason string
			if si.context == "user" || si.context == "superuser" {
				reason, err = trySetConfig(ctx, conn, name, value)
				if err != nil {
					return err
				}
			} else {
				reason = checkSettingValue(name, value, si)
			}
			if reason != "" {
				problems = append(problems, SettingProblem{name, reason})
				continue
			}
			if si.context == "postmaster" {
				restart = append(restart, name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("checking settings against pg_settings: %w", err)
	}
	return problems, restart, nil
}

// RestartSettings lists which of names take effect only after a restart
// (pg_settings context postmaster), sorted; unknown names are left out.
func (c *Controller) RestartSettings(ctx context.Context, names []string) ([]string, error) {
	var out []string
	err := c.withConn(ctx, true, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT coalesce(array_agg(name::text ORDER BY name), '{}') FROM pg_settings WHERE name = ANY($1) AND context = 'postmaster'`, names).Scan(&out)
	})
	if err != nil {
		return nil, fmt.Errorf("asking pg_settings which settings need a restart: %w", err)
	}
	return out, nil
}

// trySetConfig sets name in a transaction it rolls back: "" when Postgres
// accepts value, else its message (and hint).
func trySetConfig(ctx context.Context, conn *pgx.Conn, name, value string) (string, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // rolled back on purpose
	_, err = tx.Exec(ctx, `SELECT set_config($1, $2, true)`, name, value)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		msg := pgErr.Message
		if pgErr.Hint != "" {
			msg += " (" + pgErr.Hint + ")"
		}
		return msg, nil
	}
	return "", err
}

var numberRE = regexp.MustCompile(`^\s*([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*$`)

// Memory units in bytes and time units in microseconds, as Postgres
// accepts them in a value (guc.c's memory_unit_conversion_table and
// time_unit_conversion_table).
var (
	memoryUnits = map[string]float64{"B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
	timeUnits   = map[string]float64{"us": 1, "ms": 1e3, "s": 1e6, "min": 60e6, "h": 3600e6, "d": 86400e6}
)

// gucUnit reads pg_settings.unit ("8kB", "ms", "") as a kind and factor.
func gucUnit(u string) (table map[string]float64, factor float64) {
	mult, base := unitParts(u)
	if f, ok := memoryUnits[base]; ok {
		return memoryUnits, mult * f
	}
	if f, ok := timeUnits[base]; ok {
		return timeUnits, mult * f
	}
	return nil, 1
}

// checkSettingValue checks value against a pg_settings row the way
// Postgres parses a configuration file; "" when it would accept it, else
// Postgres's wording of the refusal.
func checkSettingValue(name, value string, si settingInfo) string {
	invalid := fmt.Sprintf("invalid value for parameter %q: %q", name, value)
	switch si.vartype {
	case "bool":
		switch strings.ToLower(strings.TrimSpace(value)) {
		case "on", "off", "true", "false", "yes", "no", "1", "0", "t", "f", "y", "n":
			return ""
		}
		return fmt.Sprintf("parameter %q requires a Boolean value", name)
	case "enum":
		for _, e := range si.enumvals {
			if strings.EqualFold(e, strings.TrimSpace(value)) {
				return ""
			}
		}
		return invalid + " (Available values: " + strings.Join(si.enumvals, ", ") + ".)"
	case "integer", "real":
		m := numberRE.FindStringSubmatch(value)
		if m == nil {
			return invalid
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return invalid
		}
		table, factor := gucUnit(si.unit)
		if m[2] != "" {
			f, ok := table[m[2]]
			if !ok {
				if table == nil {
					return invalid
				}
				return invalid + " (Valid units for this parameter are " + unitList(table) + ".)"
			}
			v = v * f / factor
		}
		if si.vartype == "integer" {
			v = math.Round(v)
		}
		lo, err1 := strconv.ParseFloat(si.minVal, 64)
		hi, err2 := strconv.ParseFloat(si.maxVal, 64)
		if err1 == nil && err2 == nil && (v < lo || v > hi) {
			// In Postgres's words, the range in the unit without its
			// multiplier ("8kB": 16 .. → 128 kB ..).
			mult, base := unitParts(si.unit)
			num := func(x float64) string {
				if base == "" {
					return strconv.FormatFloat(x*mult, 'f', -1, 64)
				}
				return strconv.FormatFloat(x*mult, 'f', -1, 64) + " " + base
			}
			return fmt.Sprintf("%s is outside the valid range for parameter %q (%s .. %s)", strings.TrimSpace(value), name, num(lo), num(hi))
		}
	}
	return ""
}

// unitParts splits pg_settings.unit ("8kB", "ms", "") into its
// multiplier and base unit.
func unitParts(u string) (float64, string) {
	i := strings.IndexFunc(u, func(r rune) bool { return r < '0' || r > '9' })
	if i <= 0 {
		return 1, u
	}
	m, _ := strconv.Atoi(u[:i])
	return float64(m), u[i:]
}

func unitList(table map[string]float64) string {
	if _, ok := table["kB"]; ok {
		return `"B", "kB", "MB", "GB", and "TB"`
	}
	return `"us", "ms", "s", "min", "h", and "d"`
}
