// What the Node scripts that test_client.py drives against a real sessiond share: the result line,
// a deadline, polling, and the client library imported as the server serves it.
//   const { out, finish } = result({}, 20000);   // prints {"result": out} and exits
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** out, and finish(err): prints {"result": out} (with out.error if err) and exits; it is
 * called by itself after ms, so that a script that hangs still answers. */
export function result(out, ms) {
  const finish = (err) => {
    if (err) out.error = String(err && err.stack ? err.stack : err);
    console.log(JSON.stringify({ result: out }));
    process.exit(0);
  };
  setTimeout(() => finish('node script timed out'), ms).unref();
  return { out, finish };
}

/** Wait until pred() is true (polling), or throw after ms. */
export async function until(pred, what, ms = 5000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** web/client.js as the server at base serves it (Node imports no http: URLs), with the
 * response it came in. */
export async function servedClient(base) {
  const res = await fetch(base + '/client.js');
  const src = await res.text();
  const lib = await import('data:text/javascript;base64,' + Buffer.from(src).toString('base64'));
  return { lib, res, src };
}
