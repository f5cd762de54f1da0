/**
 * TLS for the inference server (`tls: {cert, key}`, `kiln serve --tls-cert --tls-key`): HTTPS predictions, gRPC over
 * TLS with the certificate as the client's CA, the management port, plaintext clients refused, bad certificates named
 * (test/fixtures/tls: a self-signed localhost certificate, test material only).
 */
import * as fs from 'fs';
import * as https from 'https';
import * as os from 'os';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { serve, grpcClient } from '../lib/serve';
import { seededPng, startKilnServe } from './helpers';

const TLS_DIR = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'tls');
const cert = fs.readFileSync(path.join(TLS_DIR, 'cert.pem'));
const key = fs.readFileSync(path.join(TLS_DIR, 'key.pem'));
const opts = { classNames: ['a', 'b', 'c'], inputSize: 16, channels: 3 as const, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };

/** POSTs `body` over HTTPS trusting `ca`; resolves to the status and JSON answer. */
function postTls(url: string, body: Buffer, ca: Buffer): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: 'POST', ca, servername: 'localhost', agent: false, headers: { 'content-type': 'image/png', 'content-length': body.length } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('serve: TLS', function () {
  this.timeout(30000);
  let model: kiln.nn.Module;
  before(() => {
    kiln.manualSeed(3);
    model = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 4 }).eval();
  });
  after(() => model.dispose());

  it('serves HTTPS, gRPC over TLS and the management API over TLS; plaintext clients get nothing', async () => {
    const s = await serve(model, { ...opts, port: 0, grpcPort: 0, managementPort: 0, tls: { cert, key } });
    try {
      expect(s.url).to.match(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(s.managementUrl).to.match(/^https:/);
      const png = await seededPng(1, 16, 16);
      const r = await postTls(`${s.url}/predictions`, png, cert);
      expect(r.status).to.equal(200);
      expect(r.body.predictions[0].top).to.have.length(3);
      // the same answer over gRPC with TLS
      const c = grpcClient(s.grpcAddress.replace('127.0.0.1', 'localhost'), { ca: cert }); // (a host name: TLS servers are named, not numbered)
      const g = await c.modelInfer({ model_name: 'model', inputs: [{ name: 'input', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [png] } }], outputs: [{ name: 'probabilities', parameters: { classification: { int64_param: 1 } } }] });
      const [value, index] = g.outputs[0].contents.bytes_contents[0].toString().split(':');
      expect(Number(index)).to.equal(r.body.predictions[0].top[0].index);
      expect(Number(value)).to.be.closeTo(r.body.predictions[0].top[0].probability, 1e-6);
      expect(await c.health()).to.equal('SERVING');
      c.close();
      // plaintext HTTP to the TLS port fails; so does a gRPC client without TLS; an untrusted certificate is refused
      expect(await fetch(s.url.replace('https:', 'http:') + '/health').then((x) => x.status, () => 'failed')).to.not.equal(200);
      const plain = grpcClient(s.grpcAddress);
      expect(((await plain.serverLive({ timeoutMs: 2000 }).catch((e) => e)) as { code?: number }).code).to.be.oneOf([14, 4]); // UNAVAILABLE or DEADLINE_EXCEEDED
      plain.close();
      const untrusted = await postTls(`${s.url}/predictions`, png, Buffer.from('')).catch((e: Error) => e);
      expect(untrusted).to.be.instanceOf(Error);
      expect((untrusted as Error).message).to.match(/self.signed|certificate/i);
      const mgmt = await new Promise<number>((resolve, reject) => https.get(`${s.managementUrl}/models`, { ca: cert, servername: 'localhost', agent: false }, (res) => { res.resume(); resolve(res.statusCode!); }).on('error', reject));
      expect(mgmt).to.equal(200);
    } finally {
      await s.close();
    }
  });

  it('names a bad certificate or key before listening', () => {
    const bad = [
      [{ cert: 'not a certificate', key }, /tls: the certificate and key are not usable/],
      [{ cert, key: cert }, /tls: the certificate and key are not usable/],
      [{ cert }, /tls\.key: expected PEM text/],
      [{ cert: '', key }, /tls\.cert: expected PEM text/],
      ['cert.pem', /tls: expected \{ cert, key \}/],
    ] as const;
    for (const [tls, re] of bad) expect(() => new kiln.serving.Server(model, { ...opts, tls: tls as never })).to.throw(kiln.KilnError, re);
  });

  it('kiln serve --tls-cert --tls-key prints an https URL and answers; the flags go together and must be readable', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-serve-tls-'));
    kiln.saveModel(path.join(dir, 'model.safetensors'), model, {
      classNames: JSON.stringify(opts.classNames), inputSize: JSON.stringify([16, 16]), channels: '3', mean: JSON.stringify(opts.mean), std: JSON.stringify(opts.std),
    });
    const srv = await startKilnServe(['--model', dir, '--port', '0', '--tls-cert', path.join(TLS_DIR, 'cert.pem'), '--tls-key', path.join(TLS_DIR, 'key.pem')], /listening on (https:\/\/\S+)/);
    try {
      expect((await postTls(`${srv.url}/predictions`, await seededPng(2, 16, 16), cert)).status).to.equal(200);
    } finally {
      await srv.stop();
    }
    const { spawnSync } = await import('child_process');
    const BIN = path.resolve(__dirname, '..', '..', 'bin', 'kiln.js');
    for (const [args, re] of [
      [['--tls-cert', path.join(TLS_DIR, 'cert.pem')], /--tls-cert and --tls-key go together/],
      [['--tls-cert', path.join(dir, 'nope.pem'), '--tls-key', path.join(TLS_DIR, 'key.pem')], /--tls-cert .*nope\.pem: cannot read it \(ENOENT\)/],
      [['--tls-cert', path.join(TLS_DIR, 'key.pem'), '--tls-key', path.join(TLS_DIR, 'key.pem')], /not usable/],
    ] as const) {
      const r = spawnSync(process.execPath, [BIN, 'serve', '--model', dir, '--port', '0', ...args], { encoding: 'utf8' });
      expect(r.status).to.equal(2);
      expect(r.stderr).to.match(re);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
