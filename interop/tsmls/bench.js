// Comparison benchmark, ts-mls side: the same workloads as
// interop/cmd/mls-bench-compare runs against mls/group, on groups of the
// given sizes. Usage: node bench.js [--sizes 100,1000] [--reps 3]
// [--budget-ms 120000]. Prints one JSON object per line:
// {"size":N,"workload":"...","ms":median} or {"size":N,"skipped":"why"}.
//
// Setup (not timed): the creator adds size-1 members in one commit. Then,
// timed: add_commit (the creator commits an Add of one more member,
// Welcome with the ratchet tree), join_welcome (that member joins from
// the Welcome), create_commit (the creator commits with a path and no
// proposals), process_commit (the joined member processes it).

import {
  acceptAll,
  createCommit,
  createGroup,
  defaultCapabilities,
  defaultLifetime,
  emptyPskIndex,
  generateKeyPackage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  processPublicMessage,
} from "ts-mls";

const arg = (name, def) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : def;
};
const sizes = arg("--sizes", "100,1000").split(",").map(Number);
const reps = Number(arg("--reps", "3"));
const budgetMs = Number(arg("--budget-ms", "120000"));

const cs = await getCiphersuiteImpl(getCiphersuiteFromName("MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"));
const basic = (id) => ({ credentialType: "basic", identity: new TextEncoder().encode(id) });
const kpFor = (id) => generateKeyPackage(basic(id), defaultCapabilities(), defaultLifetime, [], cs);
const add = (kp) => ({ proposalType: "add", add: { keyPackage: kp.publicPackage } });

async function time(fn) {
  const ms = [];
  let out;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    out = await fn();
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  return [ms[Math.floor(ms.length / 2)], out];
}

const emit = (o) => console.log(JSON.stringify(o));

for (const size of sizes) {
  const start = performance.now();
  const over = () => performance.now() - start > budgetMs;
  const creator = await kpFor("member-0");
  let state = await createGroup(new TextEncoder().encode(`bench-${size}`), creator.publicPackage, creator.privatePackage, [], cs);
  const adds = [];
  for (let i = 1; i < size; i++) {
    adds.push(add(await kpFor(`member-${i}`)));
    if (i % 256 === 0 && over()) break;
  }
  if (over()) {
    emit({ size, skipped: `setup exceeded ${budgetMs} ms (key packages)` });
    continue;
  }
  if (adds.length > 0) {
    state = (await createCommit({ state, cipherSuite: cs, pskIndex: emptyPskIndex }, { extraProposals: adds, ratchetTreeExtension: false })).newState;
  }
  if (over()) {
    emit({ size, skipped: `setup exceeded ${budgetMs} ms (initial commit)` });
    continue;
  }
  const joiner = await kpFor("joiner");
  const ctx = { state, cipherSuite: cs, pskIndex: emptyPskIndex };
  const [addMs, addRes] = await time(() => createCommit(ctx, { wireAsPublicMessage: true, extraProposals: [add(joiner)], ratchetTreeExtension: true }));
  emit({ size, workload: "add_commit", ms: addMs });
  const [joinMs, joined] = await time(() => joinGroup(addRes.welcome, joiner.publicPackage, joiner.privatePackage, emptyPskIndex, cs));
  emit({ size, workload: "join_welcome", ms: joinMs });
  const ctx2 = { state: addRes.newState, cipherSuite: cs, pskIndex: emptyPskIndex };
  const [commitMs, commitRes] = await time(() => createCommit(ctx2, { wireAsPublicMessage: true }));
  emit({ size, workload: "create_commit", ms: commitMs });
  const [procMs] = await time(() => processPublicMessage(joined, commitRes.commit.publicMessage, emptyPskIndex, cs, acceptAll));
  emit({ size, workload: "process_commit", ms: procMs });
}
