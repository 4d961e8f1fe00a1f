// Validates Kubernetes manifests against the API's OpenAPI schemas, as
// `kubectl apply --dry-run=client` would, without a cluster: kubernetes-models
// carries the schema of each kind and checks an object with ajv.
//
//   node k8s_validate.mjs FILE...      prints one JSON line per object:
//   {"file": ..., "kind": ..., "name": ..., "ok": true} or {..., "ok": false, "error": "..."}
// and exits 1 if any object failed or is of a kind it does not know.
import fs from 'node:fs';
import * as yaml from 'js-yaml';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Service } from 'kubernetes-models/v1/Service';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';

const kinds = {
  'apps/v1 Deployment': Deployment,
  'v1 Service': Service,
  'policy/v1 PodDisruptionBudget': PodDisruptionBudget,
};

let failed = false;
const docs = (file) => yaml.loadAll(fs.readFileSync(file, 'utf8')).filter((d) => d != null);
const objects = process.argv[2] === '-'
  ? [['stdin', JSON.parse(fs.readFileSync(0, 'utf8'))]]
  : process.argv.slice(2).flatMap((f) => docs(f).map((d) => [f, d]));
for (const [file, doc] of objects) {
  const line = { file, kind: doc.kind, name: doc.metadata && doc.metadata.name };
  const Kind = kinds[`${doc.apiVersion} ${doc.kind}`];
  try {
    if (!Kind) throw new Error(`no schema here for ${doc.apiVersion} ${doc.kind}`);
    new Kind(doc).validate();
    line.ok = true;
  } catch (e) {
    line.ok = false;
    line.error = e.message;
    failed = true;
  }
  console.log(JSON.stringify(line));
}
process.exit(failed ? 1 : 0);
