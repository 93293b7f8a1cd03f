// Numbers of any size: integer literals and values beyond int64 are
// *big.Int (ansible-rulebook takes Python integers), compared and added
// exactly with each other, with int64 and with float64.

package rulebook

import (
	"math"
	"math/big"
)

// cmpExact compares two numbers exactly when at least one is an integer
// that float64 cannot hold exactly (any int64 pair, or a *big.Int); ok is
// false when the float64 comparison is exact enough or a side is not a
// number.
func cmpExact(lv, rv any) (int, bool) {
	li, lInt := lv.(int64)
	ri, rInt := rv.(int64)
	if lInt && rInt {
		switch {
		case li < ri:
			return -1, true
		case li > ri:
			return 1, true
		}
		return 0, true
	}
	lb, lBig := lv.(*big.Int)
	rb, rBig := rv.(*big.Int)
	if !lBig && !rBig {
		return 0, false
	}
	l, ok1 := bigFloat(lv, lb)
	r, ok2 := bigFloat(rv, rb)
	if !ok1 || !ok2 {
		return 0, false
	}
	return l.Cmp(r), true
}

// bigFloat is v as an exact big.Float (b when v is that *big.Int); false
// for a non-number, NaN or an infinity.
func bigFloat(v any, b *big.Int) (*big.Float, bool) {
	if b != nil {
		return new(big.Float).SetInt(b), true
	}
	if i, ok := toBigInt(v); ok {
		return new(big.Float).SetInt(i), true
	}
	f, ok := toFloat(v)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, false
	}
	return new(big.Float).SetFloat64(f), true
}

// toBigInt is an integer value as a *big.Int.
func toBigInt(v any) (*big.Int, bool) {
	switch n := v.(type) {
	case *big.Int:
		return n, true
	case int:
		return big.NewInt(int64(n)), true
	case int64:
		return big.NewInt(n), true
	case int32:
		return big.NewInt(int64(n)), true
	case uint64:
		return new(big.Int).SetUint64(n), true
	}
	return nil, false
}

func cmpResult(op string, c int) bool {
	switch op {
	case "==":
		return c == 0
	case "!=":
		return c != 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	case ">=":
		return c >= 0
	}
	return false
}

// intArith is l op r (op '+' or '-') on integers: an int64 while it fits,
// else a *big.Int.
func intArith(op byte, lv, rv any) any {
	li, lok := lv.(int64)
	ri, rok := rv.(int64)
	if lok && rok {
		res := li + ri
		if op == '-' {
			res = li - ri
		}
		if op == '+' && (li >= 0) == (ri >= 0) && (res >= 0) != (li >= 0) ||
			op == '-' && (li >= 0) != (ri >= 0) && (res >= 0) != (li >= 0) {
			return bigArith(op, lv, rv)
		}
		return res
	}
	return bigArith(op, lv, rv)
}

func bigArith(op byte, lv, rv any) any {
	l, _ := toBigInt(lv)
	r, _ := toBigInt(rv)
	res := new(big.Int)
	if op == '-' {
		res.Sub(l, r)
	} else {
		res.Add(l, r)
	}
	if res.IsInt64() {
		return res.Int64()
	}
	return res
}
