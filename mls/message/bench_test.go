package message

import (
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
)

func benchmarkMessage(b *testing.B, pick func(c *messagesCase) []byte, v func() codec.Unmarshaler) {
	var cases []messagesCase
	vectors.Load(b, "messages.json", &cases)
	data := pick(&cases[0])
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if err := codec.Unmarshal(data, v(), "bench"); err != nil {
				b.Fatal(err)
			}
		}
	})
	decoded := v()
	if err := codec.Unmarshal(data, decoded, "bench"); err != nil {
		b.Fatal(err)
	}
	m := decoded.(codec.Marshaler)
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			codec.Marshal(m)
		}
	})
}

func BenchmarkPublicMessageCommit(b *testing.B) {
	benchmarkMessage(b, func(c *messagesCase) []byte { return c.PublicMessageCommit },
		func() codec.Unmarshaler { return new(MLSMessage) })
}

func BenchmarkWelcome(b *testing.B) {
	benchmarkMessage(b, func(c *messagesCase) []byte { return c.MLSWelcome },
		func() codec.Unmarshaler { return new(MLSMessage) })
}

func BenchmarkKeyPackage(b *testing.B) {
	benchmarkMessage(b, func(c *messagesCase) []byte { return c.MLSKeyPackage },
		func() codec.Unmarshaler { return new(MLSMessage) })
}

func BenchmarkRatchetTree(b *testing.B) {
	benchmarkMessage(b, func(c *messagesCase) []byte { return c.RatchetTree },
		func() codec.Unmarshaler { return new(RatchetTree) })
}
