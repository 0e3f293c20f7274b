// The cluster launchers of examples/ on the engines they target: the Slurm
// job array on a one-node Slurm cluster started here
// (examples/slurm/local-cluster.sh), and the Kubernetes Indexed Job against
// the Kubernetes API schema (no cluster can run here).
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { Job } from 'kubernetes-models/batch/v1/Job';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { packageRoot } from '../ts/paths.js';
import { CLI, DATA_DIR, HAVE_DATA, HAVE_MODELS, model } from './helpers/env.js';

const run = promisify(execFile);
const root = packageRoot();
const CLUSTER = join(root, 'examples', 'slurm', 'local-cluster.sh');
const JOB = join(root, 'examples', 'slurm', 'sweep.slurm');
const MANIFEST = join(root, 'examples', 'sweep-job.yaml');

// The daemons are in /usr/sbin, which local-cluster.sh adds to PATH.
const onPath = (name: string) => [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'].some((dir) => dir && existsSync(join(dir, name)));
const HAVE_SLURM = ['munged', 'munge', 'slurmctld', 'slurmd', 'sbatch', 'sinfo'].every(onPath);
const ROOT_USER = process.getuid?.() === 0;
// CI installs Slurm (.ci/run) and runs as root: there a missing piece is a failure, not a skip.
const IN_CI = Boolean(process.env.CI);
const SKIP = IN_CI
  ? undefined
  : !HAVE_SLURM
    ? 'slurm-wlm and munge are not installed (apt-get install slurm-wlm munge, as .ci/run does)'
    : !ROOT_USER
      ? 'not root: slurmd starts jobs as the submitting user, which needs root'
      : !HAVE_DATA || !HAVE_MODELS
        ? 'no CIFAR-10 data or models ($STOXNET_DATA, $STOXNET_MODELS)'
        : undefined;

/** A TCP port free on 127.0.0.1 now (the cluster's daemons bind it a moment later). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as { port: number };
  await new Promise((ok) => server.close(ok));
  return port;
}

/** stdout and stderr of a failed command, in the error that vitest prints. */
async function sh(file: string, args: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string; timeout?: number }): Promise<string> {
  try {
    return (await run(file, args, { timeout: 240_000, ...opts, maxBuffer: 1 << 24 })).stdout;
  } catch (e) {
    const err = e as Error & { code?: number; stdout?: string; stderr?: string };
    throw new Error(`${file} ${args.join(' ')}: exit ${err.code}${(e as { killed?: boolean }).killed ? ' (killed after the timeout)' : ''}\n--- stdout\n${err.stdout}\n--- stderr\n${err.stderr}`);
  }
}

/** The lines of a results file with the one field that differs between runs, the point's wall time, set to 0. */
function linesWithoutTime(file: string): string[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  expect(lines.pop()).toBe('');
  return lines.map((line) => {
    const seconds = /,"seconds":([^,}]+)\}$/.exec(line);
    expect(seconds, line).not.toBeNull();
    expect(Number(seconds![1])).toBeGreaterThan(0);
    return line.slice(0, seconds!.index) + ',"seconds":0}';
  });
}

describe.skipIf(SKIP)(`examples/slurm/sweep.slurm on a one-node Slurm cluster${SKIP ? ` (skipped: ${SKIP})` : ''}`, () => {
  // Made in beforeAll, so that a skipped or filtered-out suite leaves nothing behind.
  let dir = '';
  let cluster = '';
  let gridFile = '';
  let logs = '';
  let env: NodeJS.ProcessEnv = {};
  let started = false;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stoxnet-slurm-test-'));
    [cluster, gridFile, logs] = [join(dir, 'cluster'), join(dir, 'grid.json'), join(dir, 'logs')];
    if (!HAVE_SLURM) throw new Error('slurm-wlm and munge are not installed, and this is CI: .ci/run must install them (apt-get install slurm-wlm munge)');
    // Free ports rather than Slurm's 6817/6818: another cluster (or another run of this test) may hold those.
    const ports = { SLURMCTLD_PORT: String(await freePort()), SLURMD_PORT: String(await freePort()) };
    env = { ...process.env, ...ports };
    started = true;
    const out = await sh('bash', [CLUSTER, 'start', cluster], { env });
    const conf = /^export SLURM_CONF=(.+)$/m.exec(out);
    expect(conf, out).not.toBeNull();
    // What a user's shell has after `mkdir -p results` and the export that start prints.
    env = { ...env, SLURM_CONF: conf![1], STOXNET_DATA: DATA_DIR };
    mkdirSync(logs);
    writeFileSync(
      gridFile,
      JSON.stringify({
        model: model('resnet20.onnx'),
        images: 20,
        base: { calibrationImages: 16 },
        axes: [{ converter: ['mtj'], samples: [1, 4], seed: [0, 1] }, { converter: ['adc'], adcBits: [4], adcRange: ['calibrated'] }, { converter: ['sparse-adc'] }],
      }),
    );
  }, 120_000);

  afterAll(async () => {
    // Also after a failed start: stop kills whatever daemons it left.
    if (started && existsSync(join(cluster, '.stoxnet-local-cluster'))) await sh('bash', [CLUSTER, 'stop', cluster], { env });
    if (started) expect(existsSync(cluster)).toBe(false);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  /** sbatch from the package root (where users submit from), with the given settings of sweep.slurm. */
  const sbatch = (args: string[], settings: Record<string, string>) => sh('sbatch', args, { env: { ...env, ...settings }, cwd: root });
  const jobId = (out: string) => {
    const m = /^Submitted batch job (\d+)$/m.exec(out);
    expect(m, out).not.toBeNull();
    return m![1];
  };

  it('a 2-task job array runs one shard per task, a dependent job merges them, and the merge equals a single-process sweep', async () => {
    const results = join(dir, 'results');
    const settings = { STOXNET_GRID: gridFile, STOXNET_RESULTS: results };
    // The node has as few as 2 CPUs: 1 per task lets both tasks run at once.
    const array = jobId(await sbatch(['--wait', '--array=0-1', '--cpus-per-task=1', '--mem=1G', '--time=00:10:00', `--output=${logs}/slurm-%A_%a.log`, JOB], settings));

    // Each array task ran its own shard (k/2) with the repository's CLI, and wrote only its points.
    for (const k of [0, 1]) {
      const log = readFileSync(join(logs, `slurm-${array}_${k}.log`), 'utf8');
      expect(log).toContain(`sweep.slurm: job ${array}_${k} on `);
      expect(log).toContain(`shard ${k}/2 of ${gridFile} with node dist/ts/cli.js`);
      expect(log).toMatch(new RegExp(`3 points evaluated, 0 already in .*shard-${k}\\.jsonl; 3 points in this shard ${k}/2`));
      const indices = readFileSync(join(results, `shard-${k}.jsonl`), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l).index);
      expect(indices).toEqual([k, k + 2, k + 4]);
    }

    // The merge as a real cluster runs it: a job that starts when every array task succeeded.
    const merge = jobId(await sbatch(['--wait', `--dependency=afterok:${array}`, '--cpus-per-task=1', '--mem=1G', `--output=${logs}/merge-%j.log`, JOB, 'merge'], settings));
    expect(readFileSync(join(logs, `merge-${merge}.log`), 'utf8')).toContain(`6 points of ${gridFile} merged into ${results}/merged.jsonl`);

    // The same grid in one process, outside Slurm, with all cores (the tasks had 1 thread each).
    const whole = join(dir, 'whole.jsonl');
    await sh('node', [CLI, 'sweep', '--grid', gridFile, '--out', whole], { env });
    const byIndex = (lines: string[]) => lines.map((l) => ({ i: JSON.parse(l).index as number, l })).sort((a, b) => a.i - b.i);
    const merged = byIndex(linesWithoutTime(join(results, 'merged.jsonl')));
    expect(merged.map((m) => m.i)).toEqual([0, 1, 2, 3, 4, 5]);
    // Byte for byte, every field (accuracy, logits digest, costs), except the wall time.
    const single = byIndex(linesWithoutTime(whole));
    expect(single.map((w) => w.i)).toEqual([0, 1, 2, 3, 4, 5]);
    for (const [k, m] of merged.entries()) expect(m.l, `point ${m.i}: merged (Slurm) line, then single-process line`).toBe(single[k].l);
  }, 600_000);

  it('a job the node cannot hold is refused; a failing task fails `sbatch --wait`, with the reason in its log: an array that is not 0..n-1, a merge with a shard missing', async () => {
    const results = join(dir, 'results-bad');
    const settings = { STOXNET_GRID: gridFile, STOXNET_RESULTS: results };
    // Refused when submitted (EnforcePartLimits), not left pending for ever.
    const cpus = Number((await sh('sinfo', ['-h', '-o', '%c'], { env })).trim());
    expect(cpus).toBeGreaterThan(0);
    await expect(sbatch(['--wait', '--array=0-1', `--cpus-per-task=${cpus + 1}`, `--output=${logs}/big-%A_%a.log`, JOB], settings)).rejects.toThrow(/More processors requested than permitted/);
    // --array=1-2 would shard the grid in 2 and write shard-2.jsonl: refused before any point runs.
    await expect(sbatch(['--wait', '--array=1-2', '--cpus-per-task=1', '--mem=1G', `--output=${logs}/bad-%A_%a.log`, JOB], settings)).rejects.toThrow(/: exit 2\n/);
    const bad = readdirSync(logs).filter((f) => f.startsWith('bad-'));
    expect(bad).toHaveLength(2);
    for (const f of bad) expect(readFileSync(join(logs, f), 'utf8')).toContain('sweep.slurm: array 1-2 (2 tasks) is not 0-1; set STOXNET_SHARDS to the number of shards');
    expect(existsSync(results)).toBe(false);

    // Shard 0 of 2 only: the merge job names the points of shard 1 as missing.
    mkdirSync(results);
    writeFileSync(join(results, 'shard-0.jsonl'), readFileSync(join(dir, 'results', 'shard-0.jsonl')));
    await expect(sbatch(['--wait', '--cpus-per-task=1', '--mem=1G', `--output=${logs}/bad-merge-%j.log`, JOB, 'merge'], settings)).rejects.toThrow(/: exit [1-9]\d*\n/);
    const log = readFileSync(join(logs, readdirSync(logs).find((f) => f.startsWith('bad-merge-'))!), 'utf8');
    expect(log).toContain('merge: 3 of 6 points missing: 1 {"converter":"mtj","samples":1,"seed":1}; 3 {"converter":"mtj","samples":4,"seed":1}; 5 {"converter":"sparse-adc"}');
    expect(existsSync(join(results, 'merged.jsonl'))).toBe(false);
  }, 300_000);
});

describe('examples/sweep-job.yaml against the Kubernetes API schema (kubernetes-models)', () => {
  const manifest = parse(readFileSync(MANIFEST, 'utf8'));
  /** The schema's error for a Job, or null when valid. */
  const schemaError = (doc: unknown): string | null => {
    try {
      new Job(doc as never).validate();
      return null;
    } catch (e) {
      return (e as Error).message;
    }
  };
  /** The manifest with one change made by `edit` on a copy. */
  const broken = (edit: (job: typeof manifest) => void) => {
    const copy = structuredClone(manifest);
    edit(copy);
    return copy;
  };

  it('is a valid batch/v1 Job, and a copy with a wrong type or a missing required field is not', () => {
    expect(manifest.apiVersion).toBe('batch/v1');
    expect(manifest.kind).toBe('Job');
    expect(schemaError(manifest)).toBeNull();
    expect(schemaError(broken((j) => (j.spec.completions = '8')))).toMatch(/\/spec\/completions must be integer/);
    expect(schemaError(broken((j) => (j.spec.template.spec.containers[0].env = { STOXNET_DATA: '/data' })))).toMatch(/\/spec\/template\/spec\/containers\/0\/env must be array/);
    expect(schemaError(broken((j) => delete j.spec.template.spec.containers[0].name))).toMatch(/\/spec\/template\/spec\/containers\/0 must have required property name/);
    expect(schemaError(broken((j) => (j.spec.template.spec.volumes[0].persistentVolumeClaim = 'stoxnet-results')))).toMatch(/volumes\/0\/persistentVolumeClaim must be object/);
  });

  // The schema allows any extra field (the OpenAPI document does not close its
  // objects), but kubectl's default field validation ("Strict") rejects
  // unknown fields. The TypeScript types generated from the same document are
  // closed: the manifest as an object literal of type IJob fails to compile on
  // a misspelt or misplaced field.
  const unknownFields = (doc: unknown): string[] => {
    const file = join(root, 'test', '__manifest_check__.ts'); // in memory only, here so that node_modules resolves
    const source = `import type { IJob } from 'kubernetes-models/batch/v1/Job';\nexport const job: IJob = ${JSON.stringify(doc, null, 1)};\n`;
    const options: ts.CompilerOptions = { strict: true, noEmit: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, skipLibCheck: true, types: [] };
    const host = ts.createCompilerHost(options);
    const getSourceFile = host.getSourceFile.bind(host);
    host.getSourceFile = (name, lang, ...rest) => (name === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest));
    const fileExists = host.fileExists.bind(host);
    host.fileExists = (name) => name === file || fileExists(name);
    const program = ts.createProgram([file], options, host);
    return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  };

  it('has no field the Kubernetes API does not know (strict field validation), and a misspelt field is caught', () => {
    expect(unknownFields(manifest)).toEqual([]);
    const typo = broken((j) => {
      j.spec.completion = j.spec.completions;
      delete j.spec.completions;
    });
    expect(schemaError(typo)).toBeNull(); // what the schema alone would let through
    expect(unknownFields(typo).join('\n')).toMatch(/known properties, and '"completion"' does not exist in type 'IJobSpec'/);
    const misplaced = broken((j) => (j.spec.template.spec.containers[0].cpu = '4'));
    expect(unknownFields(misplaced).join('\n')).toMatch(/known properties, and '"cpu"' does not exist in type 'IContainer'/);
  }, 60_000);

  it('runs one shard per completion index, mounts what it uses, and its shard count is its completions', () => {
    const spec = manifest.spec;
    expect(spec.completionMode).toBe('Indexed');
    expect(spec.parallelism).toBeLessThanOrEqual(spec.completions);
    const container = spec.template.spec.containers[0];
    const script = container.args.join(' ');
    expect(script).toContain(`--shard $JOB_COMPLETION_INDEX/${spec.completions}`);
    expect(script).toContain('--out /results/shard-$JOB_COMPLETION_INDEX.jsonl');
    const mounts = new Map<string, string>(container.volumeMounts.map((m: { name: string; mountPath: string }) => [m.name, m.mountPath]));
    expect(spec.template.spec.volumes.map((v: { name: string }) => v.name).sort()).toEqual([...mounts.keys()].sort());
    const data = container.env.find((e: { name: string }) => e.name === 'STOXNET_DATA').value;
    expect(data.startsWith(mounts.get('data')! + '/')).toBe(true);
    // A pod's restart must not reset the index's retries (Never + backoffLimitPerIndex).
    expect(spec.template.spec.restartPolicy).toBe('Never');
  });
});
