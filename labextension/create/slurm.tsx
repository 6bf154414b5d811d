/**
 * The slurm cloud's part of the server dialogs: the cluster, the partition (with its time
 * limit and largest node, as sinfo read them), the account and QOS the admin allows, and the
 * job's time limit. CPUs, memory and GPUs are then offered within the partition's nodes. The
 * server checks everything again.
 */
import * as React from 'react';

import { formatNumber } from '../servers/format';
import { ICloud, IRange, IServerConfigFields } from '../servers/types';
import { Field } from './field';
import { ISlurmCluster, ISlurmOfferings, ISlurmPartition } from './types';

/**
 * The slurm cloud's inputs in a server's form, as typed (part of `ISlurmValues`, which
 * also holds the GPU type a partition may not have).
 */
export interface ISlurmValues {
  cluster?: string;
  partition?: string;
  account?: string;
  qos?: string;
  /** The job's time limit, minutes. */
  time_minutes?: string;
  gpu_type: string;
}

/** The slurm cloud's inputs, as typed, keyed as its `config.extra` fields are. */
export const SLURM_INPUTS = [
  'cluster',
  'partition',
  'account',
  'qos',
  'time_minutes'
] as const;

export type SlurmInput = (typeof SLURM_INPUTS)[number];

/** Whether a cloud's offerings are the slurm cloud's (clusters with partitions). */
export function slurmOfferings(
  cloud: ICloud | undefined
): ISlurmOfferings | null {
  const o = cloud?.offerings as Partial<ISlurmOfferings> | undefined;
  return o && Array.isArray(o.clusters) ? (o as ISlurmOfferings) : null;
}

export function chosenCluster(
  offerings: ISlurmOfferings,
  values: ISlurmValues
): ISlurmCluster | undefined {
  return offerings.clusters.find(c => c.name === values.cluster);
}

export function chosenPartition(
  offerings: ISlurmOfferings,
  values: ISlurmValues
): ISlurmPartition | undefined {
  return chosenCluster(offerings, values)?.partitions.find(
    p => p.name === values.partition
  );
}

/** The CPUs and memory one may ask of the partition chosen (its largest node). */
export function slurmRange(
  partition: ISlurmPartition | undefined,
  key: 'cpu' | 'memory_gb'
): IRange | undefined {
  if (!partition) {
    return undefined;
  }
  return key === 'cpu'
    ? { min: 1, max: partition.cpu }
    : { min: 0.25, max: partition.memory_gb };
}

/** "2 h", "1 d 12 h", "90 min". */
export function formatMinutes(minutes: number): string {
  if (minutes % 1440 === 0) {
    return `${minutes / 1440} d`;
  }
  if (minutes >= 1440) {
    return `${Math.floor(minutes / 1440)} d ${Math.round((minutes % 1440) / 60)} h`;
  }
  return minutes % 60 === 0 ? `${minutes / 60} h` : `${minutes} min`;
}

/** A partition as the select offers it: "gpu (up to 2 h · 64 CPU · 500 GB · 4× a100)". */
export function partitionLabel(partition: ISlurmPartition): string {
  const parts = [
    `up to ${formatMinutes(partition.max_time_minutes)}`,
    `${partition.cpu} CPU`,
    `${formatNumber(partition.memory_gb)} GB`,
    ...partition.gpus.map(g => `${g.count}× ${g.type}`)
  ];
  return `${partition.name} (${parts.join(' · ')})${partition.up ? '' : ' — down'}`;
}

function text(value: unknown): string {
  return value === null || value === undefined ? '' : String(value);
}

/** The slurm inputs set to the cloud's defaults (the first cluster and partition). */
export function slurmDefaults(
  defaults: Partial<IServerConfigFields>
): Pick<ISlurmValues, SlurmInput> {
  const extra = (defaults.extra ?? {}) as Record<string, unknown>;
  return {
    cluster: text(extra.cluster),
    partition: text(extra.partition),
    account: text(extra.account),
    qos: text(extra.qos),
    time_minutes: text(extra.time_minutes)
  };
}

/** The server's `config.extra` for the slurm inputs (numbers as numbers). */
export function slurmExtra(values: ISlurmValues): Record<string, unknown> {
  const extra: Record<string, unknown> = {};
  for (const key of SLURM_INPUTS) {
    const value = (values[key] ?? '').trim();
    if (value === '') {
      continue;
    }
    const number = Number(value);
    extra[key] =
      key === 'time_minutes' && Number.isFinite(number) ? number : value;
  }
  return extra;
}

/** The GPU types of the partition chosen, as the GPU select offers them. */
export function partitionGpus(
  partition: ISlurmPartition | undefined
): { type: string; max_count: number }[] {
  return (partition?.gpus ?? []).map(g => ({
    type: g.type,
    max_count: g.count
  }));
}

export interface ISlurmFieldsProps<V extends ISlurmValues> {
  offerings: ISlurmOfferings;
  values: V;
  errors: Partial<Record<string, string>>;
  disabled?: boolean;
  locks?: Partial<Record<string, string>>;
  onChange: (update: (values: V) => V) => void;
}

/** Cluster, partition, account, QOS and time limit. */
export function SlurmFields<V extends ISlurmValues>(
  props: ISlurmFieldsProps<V>
): JSX.Element {
  const { offerings, values, errors, disabled, locks = {} } = props;
  const cluster = chosenCluster(offerings, values);
  const partition = chosenPartition(offerings, values);
  /** Choose a partition: a GPU it does not have is dropped, the time kept within its limit. */
  const withPartition = (
    latest: V,
    name: string,
    within?: ISlurmCluster
  ): V => {
    const next = (within ?? cluster)?.partitions.find(p => p.name === name);
    const time = Number(latest.time_minutes);
    return {
      ...latest,
      partition: name,
      gpu_type: next?.gpus.some(g => g.type === latest.gpu_type)
        ? latest.gpu_type
        : '',
      time_minutes:
        next && Number.isFinite(time) && time > next.max_time_minutes
          ? String(next.max_time_minutes)
          : latest.time_minutes
    };
  };
  const select = (
    key: SlurmInput,
    options: { value: string; label: string }[],
    onChange: (value: string) => void,
    none?: string
  ) => (
    <select
      className="jp-mod-styled"
      name={key}
      value={values[key] ?? ''}
      disabled={disabled || !!locks[key]}
      aria-invalid={errors[key] ? true : undefined}
      onChange={event => onChange(event.target.value)}
    >
      {none !== undefined && <option value="">{none}</option>}
      {options.map(o => (
        <option key={o.value} value={o.value}>
          {o.label}
        </option>
      ))}
    </select>
  );
  const set = (key: SlurmInput) => (value: string) =>
    props.onChange(latest => ({ ...latest, [key]: value }));

  return (
    <>
      <Field
        name="cluster"
        label="Cluster"
        error={errors.cluster}
        hint={locks.cluster ?? (cluster?.error || undefined)}
      >
        {select(
          'cluster',
          offerings.clusters.map(c => ({
            value: c.name,
            label: `${c.name} (login node ${c.login_host})`
          })),
          name =>
            props.onChange(latest => {
              const next = offerings.clusters.find(c => c.name === name);
              return withPartition(
                {
                  ...latest,
                  cluster: name,
                  account: next?.accounts[0] ?? '',
                  qos: ''
                },
                next?.partitions[0]?.name ?? '',
                next
              );
            })
        )}
      </Field>
      <Field
        name="partition"
        label="Partition"
        error={errors.partition}
        hint={locks.partition}
      >
        {select(
          'partition',
          (cluster?.partitions ?? []).map(p => ({
            value: p.name,
            label: partitionLabel(p)
          })),
          name => props.onChange(latest => withPartition(latest, name)),
          cluster && cluster.partitions.length === 0
            ? 'No partition could be read'
            : undefined
        )}
      </Field>
      {cluster && cluster.accounts.length > 0 && (
        <Field
          name="account"
          label="Account"
          error={errors.account}
          hint={locks.account}
        >
          {select(
            'account',
            cluster.accounts.map(a => ({ value: a, label: a })),
            set('account')
          )}
        </Field>
      )}
      {cluster && cluster.qos.length > 0 && (
        <Field name="qos" label="QOS" error={errors.qos} hint={locks.qos}>
          {select(
            'qos',
            cluster.qos.map(q => ({ value: q, label: q })),
            set('qos'),
            'Default'
          )}
        </Field>
      )}
      <Field
        name="time_minutes"
        label={`Time limit, minutes${
          partition ? ` (1–${partition.max_time_minutes})` : ''
        }`}
        error={errors.time_minutes}
        hint={
          locks.time_minutes ??
          'The job ends then, and the server with it: save your work before.'
        }
      >
        <input
          className="jp-mod-styled"
          name="time_minutes"
          inputMode="numeric"
          value={values.time_minutes ?? ''}
          disabled={disabled || !!locks.time_minutes}
          aria-invalid={errors.time_minutes ? true : undefined}
          onChange={event => set('time_minutes')(event.target.value)}
        />
      </Field>
    </>
  );
}
