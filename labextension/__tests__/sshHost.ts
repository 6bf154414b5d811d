/**
 * An on-prem host for the tests of the ssh cloud: OpenSSH's sshd on 127.0.0.1 with its own
 * host key, a user key of its own for logging in, and a stand-in NVML module on the host side
 * (tests/fake_nvml, as the Python tests use it) describing GPUs: this machine has none.
 */
import { ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

import { sleep } from './jupyterServer';

const REPO_ROOT = path.join(__dirname, '..', '..');
const SSHD = '/usr/sbin/sshd';

/** A GPU as the stand-in NVML describes it. */
export interface IFakeGpu {
  name: string;
  uuid: string;
  memory_total: number;
  memory_used: number;
  utilization: number;
  temperature: number;
  power_mw: number;
}

export const A100 = 'NVIDIA A100-SXM4-80GB';

/** Two A100s, the first 10% busy with 1 GB used, the second 20% with 2 GB. */
export const TWO_A100: IFakeGpu[] = [0, 1].map(i => ({
  name: A100,
  uuid: `GPU-a100-${i}`,
  memory_total: 80 * 2 ** 30,
  memory_used: (i + 1) * 2 ** 30,
  utilization: 10 * (i + 1),
  temperature: 50 + i,
  power_mw: 100000 + i * 1000
}));

/** The Python that the host runs the agent with (this one, with the package installed). */
export function hostPython(): string {
  const inVenv = path.join(REPO_ROOT, '.venv', 'bin', 'python');
  return fs.existsSync(inVenv) ? inVenv : 'python3';
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const port = (probe.address() as net.AddressInfo).port;
      probe.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise(resolve => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export class FakeGpuHost {
  port = 0;
  /** The private key that logs in (the host body's identity_file). */
  identityFile = '';
  username = os.userInfo().username;
  private _dir = '';
  private _process: ChildProcess | null = null;

  /** Whether this machine can run the host (OpenSSH's sshd installed). */
  static get available(): boolean {
    return fs.existsSync(SSHD);
  }

  async start(gpus: IFakeGpu[] | null = TWO_A100): Promise<void> {
    this._dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jcs-jest-host-'));
    const dir = this._dir;
    const keygen = (file: string) =>
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file]);
    keygen(path.join(dir, 'ssh_host_ed25519_key'));
    this.identityFile = path.join(dir, 'id_lab');
    keygen(this.identityFile);
    fs.copyFileSync(
      `${this.identityFile}.pub`,
      path.join(dir, 'authorized_keys')
    );
    const home = path.join(dir, 'host-home');
    fs.mkdirSync(home);
    const env: Record<string, string> = {
      SHLVL: '1',
      HOME: home,
      PYTHONPATH: path.join(REPO_ROOT, 'tests', 'fake_nvml')
    };
    if (gpus) {
      const file = path.join(dir, 'gpus.json');
      fs.writeFileSync(file, JSON.stringify(gpus));
      env.FAKE_NVML_GPUS = file;
    }
    this.port = await freePort();
    fs.mkdirSync('/run/sshd', { recursive: true });
    const config = path.join(dir, 'sshd_config');
    fs.writeFileSync(
      config,
      [
        `Port ${this.port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${path.join(dir, 'ssh_host_ed25519_key')}`,
        `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
        `PidFile ${path.join(dir, 'sshd.pid')}`,
        'UsePAM no',
        'StrictModes no',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PubkeyAuthentication yes',
        'AllowTcpForwarding yes',
        'PermitRootLogin yes',
        `SetEnv ${Object.entries(env)
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')}`,
        'Subsystem sftp /usr/lib/openssh/sftp-server',
        ''
      ].join('\n')
    );
    execFileSync(SSHD, ['-t', '-f', config]);
    this._process = spawn(SSHD, ['-D', '-e', '-f', config], {
      stdio: 'ignore'
    });
    const end = Date.now() + 10000;
    while (!(await canConnect(this.port))) {
      if (this._process.exitCode !== null || Date.now() > end) {
        throw new Error('sshd did not start');
      }
      await sleep(50);
    }
  }

  /** What `POST hosts` takes to register this host. */
  body(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      name: 'lab',
      hostname: '127.0.0.1',
      port: this.port,
      username: this.username,
      identity_file: this.identityFile,
      python: hostPython(),
      ...extra
    };
  }

  async stop(): Promise<void> {
    const child = this._process;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>(resolve => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    this._process = null;
    if (this._dir) {
      fs.rmSync(this._dir, { recursive: true, force: true });
    }
  }
}
