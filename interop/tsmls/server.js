// MLSClient gRPC server (MLS interop harness) backed by the ts-mls package.
//
// It is the independent peer for our interop tests: the Go runner in
// interop/runner drives two MLSClient servers through the same scenarios
// and compares what they derive. Usage: node server.js [--port N]
// (port 0 picks a free one); the chosen port is printed as "listening <port>"
// on stdout once the server accepts connections.
//
// Everything ts-mls cannot express is answered with UNIMPLEMENTED and a
// message naming the missing capability; interop/README.md lists them.

import { fileURLToPath } from "node:url";
import path from "node:path";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import {
  acceptAll,
  branchGroup,
  createApplicationMessage,
  createCommit,
  createGroup,
  createGroupInfoWithExternalPub,
  createGroupInfoWithExternalPubAndRatchetTree,
  createProposal,
  decodeMlsMessage,
  defaultCapabilities,
  defaultLifetime,
  encodeExternalSender,
  encodeMlsMessage,
  generateKeyPackage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  joinGroupExternal,
  joinGroupFromBranch,
  joinGroupFromReinit,
  makePskIndex,
  mlsExporter,
  processPrivateMessage,
  processPublicMessage,
  proposeAddExternal,
  proposeExternal,
  reinitCreateNewGroup,
} from "ts-mls";
import { getCiphersuiteNameFromId } from "ts-mls/crypto/ciphersuite.js";
import { decodeRatchetTree, encodeRatchetTree } from "ts-mls/ratchetTree.js";
import { decodeExtension, encodeExtension } from "ts-mls/extension.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const protoPath = path.join(here, "..", "proto", "mls_client.proto");
const NAME = "ts-mls 1.6.4";
// Suites whose crypto dependencies package.json installs and that the
// interop tests exercise.
const SUITES = [1, 2, 3];

const unimplemented = (what) => Object.assign(new Error(what), { code: grpc.status.UNIMPLEMENTED });
const invalid = (what) => Object.assign(new Error(what), { code: grpc.status.INVALID_ARGUMENT });
const notFound = (what) => Object.assign(new Error(what), { code: grpc.status.NOT_FOUND });

// gRPC hands out Buffers that may be views into a shared pool; ts-mls gets
// private copies.
const u8 = (b) => new Uint8Array(b ?? []);
const b64 = (b) => Buffer.from(b).toString("base64");
const hex = (b) => Buffer.from(b).toString("hex");
const basic = (identity) => ({ credentialType: "basic", identity: u8(identity) });
const eq = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

const impls = new Map();
async function suiteImpl(idOrName) {
  const name = typeof idOrName === "number" ? getCiphersuiteNameFromId(idOrName) : idOrName;
  if (name === undefined) throw invalid(`unsupported cipher suite ${idOrName}`);
  if (!impls.has(name)) impls.set(name, await uncompressedSignatureKeys(await getCiphersuiteImpl(getCiphersuiteFromName(name))));
  return impls.get(name);
}

// ts-mls 1.6.4 with @noble/curves 2 generates ECDSA signature public keys
// in compressed form (33 bytes for P-256), while RFC 9420 section 5.1.1
// requires the uncompressed point; RFC-conformant peers reject them. The
// driver generates the same keys and publishes the uncompressed point,
// which ts-mls's verify accepts as well.
async function uncompressedSignatureKeys(cs) {
  const curve = { P256: "p256", P384: "p384", P521: "p521" }[getCiphersuiteFromName(cs.name).signature];
  if (curve === undefined) return cs;
  const nist = await import("@noble/curves/nist.js");
  const c = nist[curve];
  return {
    ...cs,
    signature: {
      ...cs.signature,
      async keygen() {
        const signKey = c.utils.randomSecretKey();
        return { signKey, publicKey: c.getPublicKey(signKey, false) };
      },
    },
  };
}

function decode(bytes, wireformat) {
  const data = u8(bytes);
  const res = decodeMlsMessage(data, 0);
  if (res === undefined) throw invalid("undecodable MLSMessage");
  const [msg, used] = res;
  if (used !== data.length) throw invalid("trailing bytes after MLSMessage");
  if (wireformat !== undefined && msg.wireformat !== wireformat)
    throw invalid(`expected ${wireformat}, got ${msg.wireformat}`);
  return msg;
}

const encode = (msg) => Buffer.from(encodeMlsMessage({ version: "mls10", ...msg }));
const encodeTree = (tree) => Buffer.from(encodeRatchetTree(tree));

function decodeTree(bytes) {
  if (!bytes || bytes.length === 0) return undefined;
  const res = decodeRatchetTree(u8(bytes), 0);
  if (res === undefined) throw invalid("undecodable ratchet tree");
  return res[0];
}

// Extensions arrive as (number, bytes); ts-mls names the default types, so
// round-trip through its own codec to get its representation.
function toExtension(e) {
  const data = u8(e.extension_data);
  const lenPrefix = varint(data.length);
  const wire = new Uint8Array(2 + lenPrefix.length + data.length);
  wire[0] = (e.extension_type >> 8) & 0xff;
  wire[1] = e.extension_type & 0xff;
  wire.set(lenPrefix, 2);
  wire.set(data, 2 + lenPrefix.length);
  const res = decodeExtension(wire, 0);
  if (res === undefined) throw invalid(`bad extension ${e.extension_type}`);
  return res[0];
}

// RFC 9420 section 2.1.2 variable-length integer.
function varint(n) {
  if (n < 1 << 6) return Uint8Array.of(n);
  if (n < 1 << 14) return Uint8Array.of(0x40 | (n >> 8), n & 0xff);
  return Uint8Array.of(0x80 | (n >>> 24), (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}

// Handles handed to the runner.
let nextId = 1;
const states = new Map(); // id -> { state, cs, encrypt, psks, own:Set, pending }
const joins = new Map(); // id -> { kp, priv, cs, psks }
const reinits = new Map(); // id -> { suspended, kp, priv, cs, encrypt }
const signers = new Map(); // id -> { publicKey, signKey, credential }

function store(map, value) {
  const id = nextId++;
  map.set(id, value);
  return id;
}

function entry(id) {
  const e = states.get(id);
  if (e === undefined) throw notFound(`unknown state ${id}`);
  return e;
}

const newState = (state, cs, encrypt, psks = {}) => ({ state, cs, encrypt, psks, own: new Set(), pending: undefined });
const epochAuth = (state) => Buffer.from(state.keySchedule.epochAuthenticator);
const pskIndex = (e) => makePskIndex(e.state, e.psks);

function leafIndexOf(tree, identity) {
  for (let i = 0; i < tree.length; i += 2) {
    const n = tree[i];
    if (n?.nodeType === "leaf" && n.leaf.credential.credentialType === "basic" && eq(n.leaf.credential.identity, identity))
      return i / 2;
  }
  throw invalid(`no member with identity ${Buffer.from(identity).toString()}`);
}

async function newKeyPackage(identity, cs) {
  return generateKeyPackage(basic(identity), defaultCapabilities(), defaultLifetime, [], cs);
}

// proposalFrom builds a ts-mls Proposal from the harness's description.
function proposalFrom(desc, groupId, tree, cs) {
  const type = Buffer.from(desc.proposal_type).toString();
  switch (type) {
    case "add":
      return { proposalType: "add", add: { keyPackage: decode(desc.key_package, "mls_key_package").keyPackage } };
    case "remove":
      return { proposalType: "remove", remove: { removed: leafIndexOf(tree, desc.removed_id) } };
    case "externalPSK":
      return externalPsk(desc.psk_id, cs);
    case "resumptionPSK":
      return resumptionPsk(groupId, desc.epoch_id, cs);
    case "groupContextExtensions":
      return { proposalType: "group_context_extensions", groupContextExtensions: { extensions: desc.extensions.map(toExtension) } };
    case "reinit":
      return {
        proposalType: "reinit",
        reinit: {
          groupId: u8(desc.group_id),
          version: "mls10",
          cipherSuite: getCiphersuiteNameFromId(desc.cipher_suite),
          extensions: desc.extensions.map(toExtension),
        },
      };
    default:
      throw invalid(`unknown proposal type ${type}`);
  }
}

const externalPsk = (pskId, cs) => ({
  proposalType: "psk",
  psk: { preSharedKeyId: { psktype: "external", pskId: u8(pskId), pskNonce: cs.rng.randomBytes(cs.kdf.size) } },
});

const resumptionPsk = (groupId, epoch, cs) => ({
  proposalType: "psk",
  psk: {
    preSharedKeyId: {
      psktype: "resumption",
      usage: "application",
      pskGroupId: u8(groupId),
      pskEpoch: BigInt(epoch),
      pskNonce: cs.rng.randomBytes(cs.kdf.size),
    },
  },
});

async function propose(e, proposal) {
  const res = await createProposal(e.state, !e.encrypt, proposal, e.cs);
  e.state = res.newState;
  const bytes = encode(res.message);
  e.own.add(hex(bytes));
  return { proposal: bytes };
}

// process applies one handshake or application message to the entry.
async function processIncoming(e, bytes) {
  const msg = decode(bytes);
  if (msg.wireformat !== "mls_public_message" && msg.wireformat !== "mls_private_message")
    throw invalid(`cannot process ${msg.wireformat}`);
  // ts-mls 1.6.4's processMessage drops the PSK index for PrivateMessage
  // (it passes emptyPskIndex), so commits with PSKs go to the per-format
  // functions directly.
  const res =
    msg.wireformat === "mls_private_message"
      ? await processPrivateMessage(e.state, msg.privateMessage, pskIndex(e), e.cs, acceptAll)
      : { ...(await processPublicMessage(e.state, msg.publicMessage, pskIndex(e), e.cs, acceptAll)), kind: "newState" };
  e.state = res.newState;
  return { res, msg };
}

// commit creates a commit over the runner's by-reference proposals plus
// inline ones. ts-mls always commits every pending proposal it knows, so
// by-reference proposals of others are processed first.
async function commit(e, req) {
  for (const p of req.by_reference) if (!e.own.has(hex(p))) await processIncoming(e, p);
  const inline = req.by_value.map((d) => proposalFrom(d, e.state.groupContext.groupId, e.state.ratchetTree, e.cs));
  const res = await createCommit(
    { state: e.state, cipherSuite: e.cs, pskIndex: pskIndex(e) },
    { wireAsPublicMessage: !e.encrypt, extraProposals: inline, ratchetTreeExtension: !req.external_tree },
  );
  e.pending = res.newState;
  return {
    commit: encode(res.commit),
    welcome: res.welcome ? encode({ wireformat: "mls_welcome", welcome: res.welcome }) : Buffer.alloc(0),
    ratchet_tree: req.external_tree ? encodeTree(res.newState.ratchetTree) : Buffer.alloc(0),
  };
}

async function handleCommit(e, req) {
  for (const p of req.proposal) if (!e.own.has(hex(p))) await processIncoming(e, p);
  const { res } = await processIncoming(e, req.commit);
  if (res.kind !== "newState") throw invalid("message is not a commit");
  return res.newState;
}

function advance(oldId, state, e) {
  states.delete(oldId);
  const id = store(states, { ...newState(state, e.cs, e.encrypt, e.psks) });
  return { state_id: id, epoch_authenticator: epochAuth(state) };
}

async function reinitKeyPackage(e, state, identity) {
  const r = state.groupActiveState;
  if (r?.kind !== "suspendedPendingReinit") throw invalid("commit did not contain a ReInit");
  const cs = await suiteImpl(r.reinit.cipherSuite);
  const kp = await newKeyPackage(identity, cs);
  const id = store(reinits, { suspended: state, kp: kp.publicPackage, priv: kp.privatePackage, cs, encrypt: e.encrypt, reinit: r.reinit });
  return {
    reinit_id: id,
    key_package: encode({ wireformat: "mls_key_package", keyPackage: kp.publicPackage }),
    epoch_authenticator: epochAuth(state),
  };
}

function ownIdentity(state) {
  return state.ratchetTree[state.privatePath.leafIndex * 2].leaf.credential.identity;
}

const handlers = {
  async Name() {
    return { name: NAME };
  },
  async SupportedCiphersuites() {
    return { ciphersuites: SUITES };
  },

  async CreateGroup(req) {
    const cs = await suiteImpl(req.cipher_suite);
    const kp = await newKeyPackage(req.identity, cs);
    const state = await createGroup(u8(req.group_id), kp.publicPackage, kp.privatePackage, [], cs);
    return { state_id: store(states, newState(state, cs, req.encrypt_handshake)) };
  },

  async CreateKeyPackage(req) {
    const cs = await suiteImpl(req.cipher_suite);
    const kp = await newKeyPackage(req.identity, cs);
    const id = store(joins, { kp: kp.publicPackage, priv: kp.privatePackage, cs, psks: {} });
    return {
      transaction_id: id,
      key_package: encode({ wireformat: "mls_key_package", keyPackage: kp.publicPackage }),
      init_priv: Buffer.from(kp.privatePackage.initPrivateKey),
      encryption_priv: Buffer.from(kp.privatePackage.hpkePrivateKey),
      signature_priv: Buffer.from(kp.privatePackage.signaturePrivateKey),
    };
  },

  async JoinGroup(req) {
    const j = joins.get(req.transaction_id);
    if (j === undefined) throw notFound(`unknown transaction ${req.transaction_id}`);
    const welcome = decode(req.welcome, "mls_welcome").welcome;
    const state = await joinGroup(welcome, j.kp, j.priv, makePskIndex(undefined, j.psks), j.cs, decodeTree(req.ratchet_tree));
    const id = store(states, newState(state, j.cs, req.encrypt_handshake, j.psks));
    return { state_id: id, epoch_authenticator: epochAuth(state) };
  },

  async ExternalJoin(req) {
    if (req.psks.length > 0) throw unimplemented("ts-mls joinGroupExternal takes no PSKs");
    const gi = decode(req.group_info, "mls_group_info").groupInfo;
    const cs = await suiteImpl(gi.groupContext.cipherSuite);
    const kp = await newKeyPackage(req.identity, cs);
    const res = await joinGroupExternal(gi, kp.publicPackage, kp.privatePackage, req.remove_prior, cs, decodeTree(req.ratchet_tree));
    const id = store(states, newState(res.newState, cs, req.encrypt_handshake));
    return {
      state_id: id,
      commit: encode({ wireformat: "mls_public_message", publicMessage: res.publicMessage }),
      epoch_authenticator: epochAuth(res.newState),
    };
  },

  async GroupInfo(req) {
    const e = entry(req.state_id);
    if (req.external_tree) {
      const gi = await createGroupInfoWithExternalPub(e.state, [], e.cs);
      return { group_info: encode({ wireformat: "mls_group_info", groupInfo: gi }), ratchet_tree: encodeTree(e.state.ratchetTree) };
    }
    const gi = await createGroupInfoWithExternalPubAndRatchetTree(e.state, [], e.cs);
    return { group_info: encode({ wireformat: "mls_group_info", groupInfo: gi }), ratchet_tree: Buffer.alloc(0) };
  },

  async StateAuth(req) {
    return { state_auth_secret: epochAuth(entry(req.state_id).state) };
  },

  async Export(req) {
    const e = entry(req.state_id);
    const out = await mlsExporter(e.state.keySchedule.exporterSecret, req.label, u8(req.context), req.key_length, e.cs);
    return { exported_secret: Buffer.from(out) };
  },

  async Protect(req) {
    const e = entry(req.state_id);
    const res = await createApplicationMessage(e.state, u8(req.plaintext), e.cs, u8(req.authenticated_data));
    e.state = res.newState;
    return { ciphertext: encode({ wireformat: "mls_private_message", privateMessage: res.privateMessage }) };
  },

  async Unprotect(req) {
    const e = entry(req.state_id);
    const { res, msg } = await processIncoming(e, req.ciphertext);
    if (res.kind !== "applicationMessage") throw invalid("not an application message");
    return { authenticated_data: Buffer.from(msg.privateMessage.authenticatedData), plaintext: Buffer.from(res.message) };
  },

  async StorePSK(req) {
    const target = states.get(req.state_or_transaction_id) ?? joins.get(req.state_or_transaction_id);
    if (target === undefined) throw notFound(`unknown state or transaction ${req.state_or_transaction_id}`);
    target.psks[b64(req.psk_id)] = u8(req.psk_secret);
    return {};
  },

  async AddProposal(req) {
    const e = entry(req.state_id);
    return propose(e, { proposalType: "add", add: { keyPackage: decode(req.key_package, "mls_key_package").keyPackage } });
  },

  async UpdateProposal() {
    throw unimplemented("ts-mls has no API to create an Update proposal (it cannot keep the new leaf's private key)");
  },

  async RemoveProposal(req) {
    const e = entry(req.state_id);
    return propose(e, { proposalType: "remove", remove: { removed: leafIndexOf(e.state.ratchetTree, req.removed_id) } });
  },

  async ExternalPSKProposal(req) {
    const e = entry(req.state_id);
    return propose(e, externalPsk(req.psk_id, e.cs));
  },

  async ResumptionPSKProposal(req) {
    const e = entry(req.state_id);
    return propose(e, resumptionPsk(e.state.groupContext.groupId, req.epoch_id, e.cs));
  },

  async GroupContextExtensionsProposal(req) {
    const e = entry(req.state_id);
    return propose(e, { proposalType: "group_context_extensions", groupContextExtensions: { extensions: req.extensions.map(toExtension) } });
  },

  async Commit(req) {
    return commit(entry(req.state_id), req);
  },

  async HandleCommit(req) {
    const e = entry(req.state_id);
    return advance(req.state_id, await handleCommit(e, req), e);
  },

  async HandlePendingCommit(req) {
    const e = entry(req.state_id);
    if (e.pending === undefined) throw invalid("no pending commit");
    return advance(req.state_id, e.pending, e);
  },

  async ReInitProposal(req) {
    const e = entry(req.state_id);
    return propose(e, {
      proposalType: "reinit",
      reinit: {
        groupId: u8(req.group_id),
        version: "mls10",
        cipherSuite: getCiphersuiteNameFromId(req.cipher_suite),
        extensions: req.extensions.map(toExtension),
      },
    });
  },

  async ReInitCommit(req) {
    return commit(entry(req.state_id), req);
  },

  async HandlePendingReInitCommit(req) {
    const e = entry(req.state_id);
    if (e.pending === undefined) throw invalid("no pending commit");
    states.delete(req.state_id);
    return reinitKeyPackage(e, e.pending, ownIdentity(e.state));
  },

  async HandleReInitCommit(req) {
    const e = entry(req.state_id);
    const identity = ownIdentity(e.state);
    const state = await handleCommit(e, req);
    states.delete(req.state_id);
    return reinitKeyPackage(e, state, identity);
  },

  async ReInitWelcome(req) {
    const r = reinits.get(req.reinit_id);
    if (r === undefined) throw notFound(`unknown reinit ${req.reinit_id}`);
    const members = req.key_package.map((k) => decode(k, "mls_key_package").keyPackage);
    const res = await reinitCreateNewGroup(r.suspended, r.kp, r.priv, members, r.reinit.groupId, r.reinit.cipherSuite, r.reinit.extensions);
    // ts-mls's reinit Welcome never carries the tree: it always goes out of band.
    const id = store(states, newState(res.newState, r.cs, r.encrypt));
    return {
      state_id: id,
      welcome: encode({ wireformat: "mls_welcome", welcome: res.welcome }),
      ratchet_tree: encodeTree(res.newState.ratchetTree),
      epoch_authenticator: epochAuth(res.newState),
    };
  },

  async HandleReInitWelcome(req) {
    const r = reinits.get(req.reinit_id);
    if (r === undefined) throw notFound(`unknown reinit ${req.reinit_id}`);
    const welcome = decode(req.welcome, "mls_welcome").welcome;
    const state = await joinGroupFromReinit(r.suspended, welcome, r.kp, r.priv, decodeTree(req.ratchet_tree));
    const id = store(states, newState(state, r.cs, r.encrypt));
    return { state_id: id, epoch_authenticator: epochAuth(state) };
  },

  async CreateBranch(req) {
    const e = entry(req.state_id);
    if (req.extensions.length > 0) throw unimplemented("ts-mls branchGroup takes no group context extensions");
    const kp = await newKeyPackage(ownIdentity(e.state), e.cs);
    const members = req.key_packages.map((k) => decode(k, "mls_key_package").keyPackage);
    const res = await branchGroup(e.state, kp.publicPackage, kp.privatePackage, members, u8(req.group_id), e.cs);
    const id = store(states, newState(res.newState, e.cs, e.encrypt));
    return {
      state_id: id,
      welcome: encode({ wireformat: "mls_welcome", welcome: res.welcome }),
      ratchet_tree: encodeTree(res.newState.ratchetTree),
      epoch_authenticator: epochAuth(res.newState),
    };
  },

  async HandleBranch(req) {
    const e = entry(req.state_id);
    const j = joins.get(req.transaction_id);
    if (j === undefined) throw notFound(`unknown transaction ${req.transaction_id}`);
    const welcome = decode(req.welcome, "mls_welcome").welcome;
    const state = await joinGroupFromBranch(e.state, welcome, j.kp, j.priv, decodeTree(req.ratchet_tree), e.cs);
    const id = store(states, newState(state, e.cs, e.encrypt));
    return { state_id: id, epoch_authenticator: epochAuth(state) };
  },

  async NewMemberAddProposal(req) {
    const gi = decode(req.group_info, "mls_group_info").groupInfo;
    const cs = await suiteImpl(gi.groupContext.cipherSuite);
    const kp = await newKeyPackage(req.identity, cs);
    const msg = await proposeAddExternal(gi, kp.publicPackage, kp.privatePackage, cs);
    const id = store(joins, { kp: kp.publicPackage, priv: kp.privatePackage, cs, psks: {} });
    return {
      transaction_id: id,
      proposal: encode(msg),
      init_priv: Buffer.from(kp.privatePackage.initPrivateKey),
      encryption_priv: Buffer.from(kp.privatePackage.hpkePrivateKey),
      signature_priv: Buffer.from(kp.privatePackage.signaturePrivateKey),
    };
  },

  async CreateExternalSigner(req) {
    const cs = await suiteImpl(req.cipher_suite);
    const keys = await cs.signature.keygen();
    const credential = basic(req.identity);
    const id = store(signers, { ...keys, credential, cs });
    return { signer_id: id, external_sender: Buffer.from(encodeExternalSender({ signaturePublicKey: keys.publicKey, credential })) };
  },

  // ts-mls 1.6.4 models external_senders as one extension per sender,
  // each holding a single ExternalSender, and takes sender_index as the
  // position among those extensions. RFC 9420 section 12.1.8.1 defines one
  // extension holding vector<ExternalSender> (and extension lists must not
  // repeat a type), so ts-mls cannot accept an RFC external_senders
  // extension and its external proposals cannot be verified by others.
  async AddExternalSigner() {
    throw unimplemented("ts-mls 1.6.4 cannot decode an RFC 9420 external_senders extension (vector<ExternalSender>)");
  },

  async ExternalSignerProposal() {
    throw unimplemented("ts-mls 1.6.4 indexes external senders by extension, not by position in external_senders (RFC 9420 section 12.1.8.1)");
  },

  async Free(req) {
    states.delete(req.state_id);
    return {};
  },
};

function wrap(name, fn) {
  return (call, callback) => {
    fn(call.request).then(
      (res) => callback(null, res),
      (err) => {
        if (process.env.TSMLS_DEBUG) console.error(`${name}:`, err);
        callback({ code: err.code ?? grpc.status.INTERNAL, details: `${name}: ${err.message ?? err}` });
      },
    );
  };
}

function main() {
  const portArg = process.argv.indexOf("--port");
  const port = portArg >= 0 ? Number(process.argv[portArg + 1]) : 50051;
  const def = protoLoader.loadSync(protoPath, { keepCase: true, longs: String, enums: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def).mls_client;
  const server = new grpc.Server();
  const impl = {};
  for (const name of Object.keys(pkg.MLSClient.service)) {
    impl[name] = wrap(name, handlers[name] ?? (async () => { throw unimplemented(name); }));
  }
  server.addService(pkg.MLSClient.service, impl);
  server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
    if (err) {
      console.error(err);
      process.exit(1);
    }
    console.log(`listening ${bound}`);
  });
}

main();
