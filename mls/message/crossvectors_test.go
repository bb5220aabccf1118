package message

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
)

// TestOtherVectorsRoundTrip decodes and re-encodes every wire structure
// that the other vector files carry. Those files are checked in full by
// the packages that own their semantics; this test only proves the
// encodings here, so it prints no "vectors:" line.
func TestOtherVectorsRoundTrip(t *testing.T) {
	type item struct {
		name string
		data []byte
		v    codec.Unmarshaler
	}
	var items []item
	add := func(name string, data []byte, v codec.Unmarshaler) {
		items = append(items, item{name, data, v})
	}

	var transcript []struct {
		AuthenticatedContent vectors.Hex `json:"authenticated_content"`
	}
	vectors.Load(t, "transcript-hashes.json", &transcript)
	for i, c := range transcript {
		add(fmt.Sprintf("transcript-hashes[%d].authenticated_content", i), c.AuthenticatedContent, new(AuthenticatedContent))
	}

	var protection []struct {
		P     vectors.Hex `json:"proposal"`
		PPub  vectors.Hex `json:"proposal_pub"`
		PPriv vectors.Hex `json:"proposal_priv"`
		C     vectors.Hex `json:"commit"`
		CPub  vectors.Hex `json:"commit_pub"`
		CPriv vectors.Hex `json:"commit_priv"`
		APriv vectors.Hex `json:"application_priv"`
	}
	vectors.Load(t, "message-protection.json", &protection)
	for i, c := range protection {
		n := fmt.Sprintf("message-protection[%d].", i)
		add(n+"proposal", c.P, new(Proposal))
		add(n+"commit", c.C, new(Commit))
		for _, m := range []struct {
			name string
			data []byte
		}{{"proposal_pub", c.PPub}, {"proposal_priv", c.PPriv}, {"commit_pub", c.CPub}, {"commit_priv", c.CPriv}, {"application_priv", c.APriv}} {
			add(n+m.name, m.data, new(MLSMessage))
		}
	}

	var welcome []struct {
		KeyPackage vectors.Hex `json:"key_package"`
		Welcome    vectors.Hex `json:"welcome"`
	}
	vectors.Load(t, "welcome.json", &welcome)
	for i, c := range welcome {
		add(fmt.Sprintf("welcome[%d].key_package", i), c.KeyPackage, new(MLSMessage))
		add(fmt.Sprintf("welcome[%d].welcome", i), c.Welcome, new(MLSMessage))
	}

	var validation []struct {
		Tree vectors.Hex `json:"tree"`
	}
	vectors.Load(t, "tree-validation.json", &validation)
	for i, c := range validation {
		add(fmt.Sprintf("tree-validation[%d].tree", i), c.Tree, new(RatchetTree))
	}

	var treekem []struct {
		RatchetTree vectors.Hex `json:"ratchet_tree"`
		UpdatePaths []struct {
			UpdatePath vectors.Hex `json:"update_path"`
		} `json:"update_paths"`
	}
	vectors.Load(t, "treekem.json", &treekem)
	for i, c := range treekem {
		add(fmt.Sprintf("treekem[%d].ratchet_tree", i), c.RatchetTree, new(RatchetTree))
		for j, p := range c.UpdatePaths {
			add(fmt.Sprintf("treekem[%d].update_paths[%d]", i, j), p.UpdatePath, new(UpdatePath))
		}
	}

	var operations []struct {
		Proposal   vectors.Hex `json:"proposal"`
		TreeBefore vectors.Hex `json:"tree_before"`
		TreeAfter  vectors.Hex `json:"tree_after"`
	}
	vectors.Load(t, "tree-operations.json", &operations)
	for i, c := range operations {
		add(fmt.Sprintf("tree-operations[%d].proposal", i), c.Proposal, new(Proposal))
		add(fmt.Sprintf("tree-operations[%d].tree_before", i), c.TreeBefore, new(RatchetTree))
		add(fmt.Sprintf("tree-operations[%d].tree_after", i), c.TreeAfter, new(RatchetTree))
	}

	for _, file := range []string{"passive-client-welcome.json", "passive-client-handling-commit.json", "passive-client-random.json"} {
		var passive []struct {
			KeyPackage  vectors.Hex `json:"key_package"`
			Welcome     vectors.Hex `json:"welcome"`
			RatchetTree vectors.Hex `json:"ratchet_tree"`
			Epochs      []struct {
				Proposals []vectors.Hex `json:"proposals"`
				Commit    vectors.Hex   `json:"commit"`
			} `json:"epochs"`
		}
		vectors.Load(t, file, &passive)
		for i, c := range passive {
			n := fmt.Sprintf("%s[%d].", file, i)
			add(n+"key_package", c.KeyPackage, new(MLSMessage))
			add(n+"welcome", c.Welcome, new(MLSMessage))
			if len(c.RatchetTree) != 0 { // null when the Welcome carries the tree
				add(n+"ratchet_tree", c.RatchetTree, new(RatchetTree))
			}
			for j, e := range c.Epochs {
				for k, p := range e.Proposals {
					add(fmt.Sprintf("%sepochs[%d].proposals[%d]", n, j, k), p, new(MLSMessage))
				}
				add(fmt.Sprintf("%sepochs[%d].commit", n, j), e.Commit, new(MLSMessage))
			}
		}
	}

	for _, it := range items {
		if len(it.data) == 0 {
			t.Errorf("%s: missing", it.name)
			continue
		}
		if err := codec.Unmarshal(it.data, it.v, it.name); err != nil {
			t.Errorf("%s: %v", it.name, err)
			continue
		}
		if got := codec.Marshal(it.v.(codec.Marshaler)); !bytes.Equal(got, it.data) {
			t.Errorf("%s: re-encodes differently", it.name)
		}
	}
	t.Logf("%d structures round-tripped", len(items))
}
