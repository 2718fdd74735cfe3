package pgctl

import "testing"

// TestCheckSettingValue: the pg_settings check of settings a session may
// not set (context postmaster, sighup...), in Postgres's words.
func TestCheckSettingValue(t *testing.T) {
	maxConn := settingInfo{vartype: "integer", minVal: "1", maxVal: "262143", context: "postmaster"}
	shared := settingInfo{vartype: "integer", unit: "8kB", minVal: "16", maxVal: "1073741823", context: "postmaster"}
	timeout := settingInfo{vartype: "integer", unit: "ms", minVal: "0", maxVal: "2147483647", context: "sighup"}
	boolean := settingInfo{vartype: "bool", context: "postmaster"}
	enum := settingInfo{vartype: "enum", enumvals: []string{"minimal", "replica", "logical"}, context: "postmaster"}
	for _, tc := range []struct {
		name, param, value string
		si                 settingInfo
		want               string
	}{
		{"integer ok", "max_connections", "150", maxConn, ""},
		{"integer below", "max_connections", "0", maxConn, `0 is outside the valid range for parameter "max_connections" (1 .. 262143)`},
		{"integer not a number", "max_connections", "lots", maxConn, `invalid value for parameter "max_connections": "lots"`},
		{"integer with a unit it has none of", "max_connections", "10MB", maxConn, `invalid value for parameter "max_connections": "10MB"`},
		{"memory in MB", "shared_buffers", "128MB", shared, ""},
		{"memory below in kB", "shared_buffers", "64kB", shared, `64kB is outside the valid range for parameter "shared_buffers" (128 kB .. 8589934584 kB)`},
		{"memory with a time unit", "shared_buffers", "10s", shared, `invalid value for parameter "shared_buffers": "10s" (Valid units for this parameter are "B", "kB", "MB", "GB", and "TB".)`},
		{"time in s", "wal_sender_timeout", "10s", timeout, ""},
		{"time below", "wal_sender_timeout", "-1s", timeout, `-1s is outside the valid range for parameter "wal_sender_timeout" (0 ms .. 2147483647 ms)`},
		{"time with a memory unit", "wal_sender_timeout", "10MB", timeout, `invalid value for parameter "wal_sender_timeout": "10MB" (Valid units for this parameter are "us", "ms", "s", "min", "h", and "d".)`},
		{"bool", "fsync", "yes", boolean, ""},
		{"bool wrong", "fsync", "maybe", boolean, `parameter "fsync" requires a Boolean value`},
		{"enum any case", "wal_level", "Replica", enum, ""},
		{"enum wrong", "wal_level", "full", enum, `invalid value for parameter "wal_level": "full" (Available values: minimal, replica, logical.)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkSettingValue(tc.param, tc.value, tc.si); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
