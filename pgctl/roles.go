package pgctl

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// scramIterations matches Postgres' default scram_iterations.
const scramIterations = 4096

// EnsureRole creates or alters a role so that it can log in, has
// REPLICATION when replication is true (it is never taken away), and has
// password (when non-empty). The password never travels in clear text: it
// is sent as a SCRAM-SHA-256 verifier computed here (a password with
// non-ASCII characters, which Postgres would SASLprep-normalize, is sent as
// a quoted literal instead). An unchanged password is not rewritten. It is
// never logged. Runs on a primary only.
func (c *Controller) EnsureRole(ctx context.Context, name string, replication bool, password string) error {
	if name == "" {
		return errors.New("ensuring role: empty role name")
	}
	ident := pgx.Identifier{name}.Sanitize()
	var action string
	err := c.withConn(ctx, false, func(conn *pgx.Conn) error {
		for attempt := 0; ; attempt++ {
			var exists, canLogin, repl bool
			var stored *string
			err := conn.QueryRow(ctx, `SELECT true, rolcanlogin, rolreplication, rolpassword FROM pg_authid WHERE rolname = $1`, name).
				Scan(&exists, &canLogin, &repl, &stored)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			var attrs []string
			if !exists || !canLogin {
				attrs = append(attrs, "LOGIN")
			}
			if replication && (!exists || !repl) {
				attrs = append(attrs, "REPLICATION")
			}
			if password != "" && (stored == nil || !scramMatches(*stored, password)) {
				lit, err := passwordLiteral(password)
				if err != nil {
					return err
				}
				attrs = append(attrs, "PASSWORD "+lit)
			}
			if exists && len(attrs) == 0 {
				action = ""
				return nil
			}
			verb := "ALTER"
			if !exists {
				verb = "CREATE"
			}
			action = strings.ToLower(verb)
			_, err = conn.Exec(ctx, verb+" ROLE "+ident+" "+strings.Join(attrs, " "))
			if pgCode(err) == "42710" && attempt == 0 { // created concurrently: alter it
				continue
			}
			return err
		}
	})
	if err != nil {
		return fmt.Errorf("ensuring role %s: %w", name, err)
	}
	if action != "" {
		c.log.Info("role "+action+"d", "role", name, "replication", replication)
	}
	return nil
}

func passwordLiteral(password string) (string, error) {
	for _, r := range password {
		if r > 0x7e || r < 0x20 {
			return quoteLiteral(password), nil
		}
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	v, err := scramVerifier(password, salt, scramIterations)
	if err != nil {
		return "", err
	}
	return quoteLiteral(v), nil
}

// quoteLiteral quotes s as an SQL string literal, correct whatever
// standard_conforming_strings is.
func quoteLiteral(s string) string {
	if strings.Contains(s, `\`) {
		return `E'` + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + `'`
	}
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}

// scramVerifier builds the rolpassword value Postgres stores for
// SCRAM-SHA-256: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>.
func scramVerifier(password string, salt []byte, iter int) (string, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		return "", err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iter, b64(salt), b64(storedKey[:]), b64(serverKey)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// scramMatches reports whether a stored SCRAM verifier was made from password.
func scramMatches(stored, password string) bool {
	rest, ok := strings.CutPrefix(stored, "SCRAM-SHA-256$")
	if !ok {
		return false
	}
	iterSalt, _, ok := strings.Cut(rest, "$")
	if !ok {
		return false
	}
	iterStr, saltB64, ok := strings.Cut(iterSalt, ":")
	if !ok {
		return false
	}
	iter, err := strconv.Atoi(iterStr)
	if err != nil || iter <= 0 || iter > 1<<20 {
		return false
	}
	salt, err := base64.StdEncoding.DecodeString(saltB64)
	if err != nil {
		return false
	}
	want, err := scramVerifier(password, salt, iter)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(stored)) == 1
}
