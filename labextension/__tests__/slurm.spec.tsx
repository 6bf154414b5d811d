/**
 * The create form on the slurm cloud, from offerings shaped as `GET clouds` answers them
 * (tests/test_slurm.py checks the real answer of a one-node cluster): the cluster, its
 * partitions with their time limits and nodes, the account, the job's time limit, CPUs,
 * memory and GPUs within the partition chosen; the request it makes; errors by field.
 */
import * as React from 'react';
import { act } from 'react';

import {
  buildCreateRequest,
  CreateServerForm,
  errorKeyFor,
  ICreateFormValues,
  initialValues
} from '../servers/createForm';
import { ICloud } from '../servers/types';
import { formatMinutes, partitionLabel } from '../create/slurm';
import { ISlurmOfferings } from '../create/types';
import { mountReactPerTest } from './testing';

const OFFERINGS: ISlurmOfferings = {
  clusters: [
    {
      name: 'hpc',
      login_host: 'login',
      partitions: [
        {
          name: 'gpu',
          max_time_minutes: 120,
          cpu: 64,
          memory_gb: 500,
          gpus: [{ type: 'a100', count: 4 }],
          up: true
        },
        {
          name: 'long',
          max_time_minutes: 2880,
          cpu: 32,
          memory_gb: 250,
          gpus: [],
          up: true
        }
      ],
      accounts: ['physics', 'chemistry'],
      qos: [],
      max_time_minutes: 2880,
      error: ''
    }
  ]
};

const SLURM: ICloud = {
  name: 'slurm',
  label: 'Slurm cluster',
  description: 'Jobs on an HPC cluster.',
  supports_suspend: false,
  config_fields: ['cpu', 'gpu', 'memory_gb'],
  defaults: {
    cpu: 1,
    memory_gb: 1,
    gpu: null,
    extra: {
      time_minutes: 60,
      cluster: 'hpc',
      partition: 'gpu',
      account: 'physics'
    }
  },
  available: true,
  reason: '',
  offerings: OFFERINGS as unknown as ICloud['offerings']
};

describe('the create form on the slurm cloud', () => {
  const mount = mountReactPerTest();
  let current: ICreateFormValues;

  function render(start: ICreateFormValues): void {
    current = start;
    const draw = () =>
      mount.render(
        <CreateServerForm
          clouds={[SLURM]}
          values={current}
          errors={{ partition: 'Not this one.' }}
          onChange={update => {
            current = update(current);
            draw();
          }}
        />
      );
    draw();
  }

  function choose(name: string, value: string): void {
    const select = mount.container.querySelector<HTMLSelectElement>(
      `select[name="${name}"]`
    )!;
    act(() => {
      select.value = value;
      select.dispatchEvent(new Event('change', { bubbles: true }));
    });
  }

  function options(name: string): string[] {
    return Array.from(
      mount.container.querySelectorAll<HTMLOptionElement>(
        `select[name="${name}"] option`
      )
    ).map(o => o.textContent ?? '');
  }

  it('offers the cluster, its partitions, accounts, time limit, CPUs, memory and GPUs', () => {
    render(initialValues([SLURM]));
    const names = Array.from(
      mount.container.querySelectorAll<HTMLInputElement | HTMLSelectElement>(
        'input[name], select[name]'
      )
    ).map(e => e.name);
    expect(names).toEqual([
      'name',
      'cloud',
      'cluster',
      'partition',
      'account',
      'time_minutes',
      'cpu',
      'memory_gb',
      'gpu_type',
      'workspace_mode',
      'color'
    ]);
    expect(options('partition')).toEqual([
      'gpu (up to 2 h · 64 CPU · 500 GB · 4× a100)',
      'long (up to 2 d · 32 CPU · 250 GB)'
    ]);
    expect(options('account')).toEqual(['physics', 'chemistry']);
    expect(options('gpu_type')).toEqual(['None', 'a100']);
    const text = mount.container.textContent ?? '';
    expect(text).toContain('CPUs (1–64)');
    expect(text).toContain('Time limit, minutes (1–120)');
    // The server's complaint shows by the field it names.
    expect(
      mount.container.querySelector('[data-field="partition"]')!.textContent
    ).toContain('Not this one.');
  });

  it('keeps GPUs and the time limit within the partition chosen', () => {
    render({ ...initialValues([SLURM]), time_minutes: '100' });
    choose('gpu_type', 'a100');
    expect(current.gpu_type).toBe('a100');
    choose('partition', 'long');
    expect(current).toMatchObject({ partition: 'long', gpu_type: '' });
    expect(options('gpu_type')).toEqual([]); // no GPU select: long has none
    expect(mount.container.textContent).toContain('CPUs (1–32)');
    current = { ...current, time_minutes: '2000' };
    choose('partition', 'gpu');
    expect(current.time_minutes).toBe('120');
  });

  it('sends the slurm options in config.extra, numbers as numbers', () => {
    const values: ICreateFormValues = {
      ...initialValues([SLURM]),
      name: 'a100-job',
      account: 'chemistry',
      time_minutes: '90',
      cpu: '8',
      gpu_type: 'a100',
      gpu_count: '2'
    };
    expect(buildCreateRequest(values, SLURM).config).toEqual({
      cpu: 8,
      memory_gb: 1,
      gpu: { type: 'a100', count: 2 },
      extra: {
        cluster: 'hpc',
        partition: 'gpu',
        account: 'chemistry',
        time_minutes: 90
      }
    });
    expect(errorKeyFor('config.extra.time_minutes')).toBe('time_minutes');
    expect(errorKeyFor('config.extra.partition')).toBe('partition');
  });

  it('says time limits in words', () => {
    expect(formatMinutes(90)).toBe('90 min');
    expect(formatMinutes(120)).toBe('2 h');
    expect(formatMinutes(2160)).toBe('1 d 12 h');
    expect(
      partitionLabel({ ...OFFERINGS.clusters[0].partitions[1], up: false })
    ).toBe('long (up to 2 d · 32 CPU · 250 GB) — down');
  });
});
