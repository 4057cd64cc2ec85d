package render

import (
	"fmt"
	"strings"
)

// This file ports the parts of Redis 7.0 that read a config file:
// sdssplitargs() from src/sds.c and the line loop of
// loadServerConfigFromString() from src/config.c. The renderer's output is
// checked against it (round trips, fuzzing), it is checked against a real
// redis-server (realredis_test.go), and the simulated Redis of the
// benchmarks reads the operator's files with it.

// cIsSpace is isspace() in the C locale (Redis never sets LC_CTYPE).
func cIsSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

func isHexDigit(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func hexDigitToInt(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}

// SplitArgs ports sdssplitargs(). The input is a C string, so it ends at
// its first NUL byte. ok is false where Redis returns NULL (unbalanced quotes,
// or a closing quote followed by something other than a space). An empty or
// all-blank line gives zero arguments and ok.
func SplitArgs(line string) (args []string, ok bool) {
	if i := strings.IndexByte(line, 0); i >= 0 {
		line = line[:i]
	}
	// at(i) is *(p+i): the terminating NUL past the end.
	at := func(i int) byte {
		if i < len(line) {
			return line[i]
		}
		return 0
	}
	args = []string{}
	p := 0
	for {
		// skip blanks
		for at(p) != 0 && cIsSpace(at(p)) {
			p++
		}
		if at(p) == 0 {
			return args, true
		}
		inq, insq, done := false, false, false
		current := []byte{}
		for !done {
			switch {
			case inq:
				if at(p) == '\\' && at(p+1) == 'x' && isHexDigit(at(p+2)) && isHexDigit(at(p+3)) {
					current = append(current, hexDigitToInt(at(p+2))*16+hexDigitToInt(at(p+3)))
					p += 3
				} else if at(p) == '\\' && at(p+1) != 0 {
					p++
					var c byte
					switch at(p) {
					case 'n':
						c = '\n'
					case 'r':
						c = '\r'
					case 't':
						c = '\t'
					case 'b':
						c = '\b'
					case 'a':
						c = '\a'
					default:
						c = at(p)
					}
					current = append(current, c)
				} else if at(p) == '"' {
					// closing quote must be followed by a space or nothing at all.
					if at(p+1) != 0 && !cIsSpace(at(p+1)) {
						return nil, false
					}
					done = true
				} else if at(p) == 0 {
					// unterminated quotes
					return nil, false
				} else {
					current = append(current, at(p))
				}
			case insq:
				if at(p) == '\\' && at(p+1) == '\'' {
					p++
					current = append(current, '\'')
				} else if at(p) == '\'' {
					if at(p+1) != 0 && !cIsSpace(at(p+1)) {
						return nil, false
					}
					done = true
				} else if at(p) == 0 {
					return nil, false
				} else {
					current = append(current, at(p))
				}
			default:
				switch at(p) {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					current = append(current, at(p))
				}
			}
			if at(p) != 0 {
				p++
			}
		}
		args = append(args, string(current))
	}
}

// Line is one directive as Redis sees it.
type Line struct {
	Num  int // 1-based line number in the file
	Args []string
}

// ParseConf ports the line loop of loadServerConfigFromString(): the file is
// read as a C string (strlen), split on '\n', each line trimmed of " \t\r\n",
// comments and blank lines skipped, the rest split with sdssplitargs and the
// directive name lower-cased.
func ParseConf(data []byte) ([]Line, error) {
	s := string(data)
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	var out []Line
	for i, l := range strings.Split(s, "\n") {
		l = strings.Trim(l, " \t\r\n")
		if l == "" || l[0] == '#' {
			continue
		}
		argv, ok := SplitArgs(l)
		if !ok {
			return nil, fmt.Errorf("line %d: Unbalanced quotes in configuration line", i+1)
		}
		if len(argv) == 0 {
			continue
		}
		argv[0] = asciiLower(argv[0])
		out = append(out, Line{Num: i + 1, Args: argv})
	}
	return out, nil
}

// asciiLower is sdstolower(): C tolower() in the C locale.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// directiveKey names a line for lookups: "port", or "sentinel auth-pass" for
// sentinel sub-directives.
func directiveKey(args []string) string {
	if len(args) >= 2 && args[0] == "sentinel" {
		return "sentinel " + asciiLower(args[1])
	}
	return args[0]
}

// linesFor returns every parsed line whose directiveKey is key.
func linesFor(lines []Line, key string) [][]string {
	var out [][]string
	for _, l := range lines {
		if directiveKey(l.Args) == key {
			out = append(out, l.Args)
		}
	}
	return out
}
