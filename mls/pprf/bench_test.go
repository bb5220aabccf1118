package pprf

import (
	"math/rand/v2"
	"testing"
)

func benchmarkEvaluate(b *testing.B, punctures int) {
	s := suite1(b)
	r := rand.New(rand.NewPCG(5, 6))
	p, _ := New(s, seq(32, 0))
	for range punctures {
		if _, err := p.Evaluate(randomBytes(r, 32)); err != nil {
			b.Fatal(err)
		}
	}
	ins := make([][]byte, b.N)
	for i := range ins {
		ins[i] = randomBytes(r, 32)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := p.Evaluate(ins[i]); err != nil {
			b.Fatal(err)
		}
	}
	// The state grows by about 8*Nh secrets per evaluation, so the run
	// ends with more than it started with; this reports where it ended.
	b.ReportMetric(float64(p.Len()), "secrets-at-end")
}

// Fresh: a new epoch's first child. Punctured100/1000: an epoch that has
// already made that many children (far beyond what retention allows).
func BenchmarkEvaluateFresh(b *testing.B) {
	s := suite1(b)
	r := rand.New(rand.NewPCG(7, 8))
	in := randomBytes(r, 32)
	key := seq(32, 0)
	for b.Loop() {
		p, _ := New(s, key)
		if _, err := p.Evaluate(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEvaluatePunctured100(b *testing.B)  { benchmarkEvaluate(b, 100) }
func BenchmarkEvaluatePunctured1000(b *testing.B) { benchmarkEvaluate(b, 1000) }

// NextChild: what a second commit on a stored DMLS epoch costs in the
// PPRF: decode the stored state (punctured once by the first child),
// evaluate, encode. It reports the encoded size before and after.
func BenchmarkNextChild(b *testing.B) {
	s := suite1(b)
	r := rand.New(rand.NewPCG(9, 10))
	p, _ := New(s, seq(32, 0))
	if _, err := p.Evaluate(randomBytes(r, 32)); err != nil {
		b.Fatal(err)
	}
	kept, _ := p.MarshalBinary()
	in := randomBytes(r, 32)
	var after []byte
	for b.Loop() {
		var q PPRF
		if err := q.UnmarshalBinary(kept); err != nil {
			b.Fatal(err)
		}
		if _, err := q.Evaluate(in); err != nil {
			b.Fatal(err)
		}
		after, _ = q.MarshalBinary()
	}
	b.ReportMetric(float64(len(kept)), "bytes-before")
	b.ReportMetric(float64(len(after)), "bytes-after")
}
