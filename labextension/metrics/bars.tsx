import * as React from 'react';

import { IServerEntry } from '../tokens';
import { formatBytes, percentOf } from './format';
import { IGpuMetrics, IServerMetrics } from './types';

export { formatBytes, percentOf };

/** How full a bar is, for its colour: below 60%, below 90%, or above. */
export function level(percent: number): 'low' | 'mid' | 'high' {
  return percent < 60 ? 'low' : percent < 90 ? 'mid' : 'high';
}

/** One labelled bar, e.g. "CPU ▓▓░░ 37%". */
export function MetricBar(props: {
  /** What it measures, for tests and styles: `cpu`, `memory`, `gpu-0-util`, ... */
  name: string;
  label: string;
  /** 0-100, or null when unknown (an empty bar, the value says why). */
  percent: number | null;
  value: string;
  title: string;
}): JSX.Element {
  const { percent } = props;
  const rounded = percent === null ? null : Math.round(percent);
  return (
    <div
      className="jp-ComputeServers-metric"
      data-metric={props.name}
      title={props.title}
    >
      <span className="jp-ComputeServers-metricLabel">{props.label}</span>
      <div
        className="jp-ComputeServers-metricBar"
        role="meter"
        aria-label={props.label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={rounded ?? undefined}
        aria-valuetext={props.value}
      >
        {percent !== null && (
          <div
            className="jp-ComputeServers-metricFill"
            data-level={level(percent)}
            style={{ width: `${percent}%` }}
          />
        )}
      </div>
      <span className="jp-ComputeServers-metricValue">{props.value}</span>
    </div>
  );
}

function gpuTitle(gpu: IGpuMetrics): string {
  const parts = [`${gpu.name} (GPU ${gpu.index})`];
  if (gpu.utilization !== null) {
    parts.push(`${Math.round(gpu.utilization)}% busy`);
  } else {
    parts.push('utilization unknown (MIG mode?)');
  }
  parts.push(
    `memory ${formatBytes(gpu.memory_used)} of ${formatBytes(gpu.memory_total)}`
  );
  if (gpu.temperature !== null) {
    parts.push(`${Math.round(gpu.temperature)} °C`);
  }
  if (gpu.power_watts !== null) {
    parts.push(
      `${Math.round(gpu.power_watts)} W` +
        (gpu.power_limit_watts !== null
          ? ` of ${Math.round(gpu.power_limit_watts)} W`
          : '')
    );
  }
  return parts.join(', ');
}

/** This server's own use of a GPU it shares, beside the whole GPU's figures:
 * "this server: 6.1 GB, 40%". */
function OwnUse(props: {
  gpu: IGpuMetrics;
  own: NonNullable<IGpuMetrics['own']>;
}): JSX.Element {
  const { gpu, own } = props;
  const utilization =
    typeof own.utilization === 'number'
      ? `${Math.round(own.utilization)}%`
      : 'use unknown';
  const value = `this server: ${formatBytes(own.memory_used)}, ${utilization}`;
  return (
    <MetricBar
      name={`gpu-${gpu.index}-own`}
      label={`GPU ${gpu.index} own`}
      percent={typeof own.utilization === 'number' ? own.utilization : null}
      value={value}
      title={
        `${value} (${own.processes} process${own.processes === 1 ? '' : 'es'}); ` +
        'the GPU is shared with other servers (MPS), whose use the bars above include'
      }
    />
  );
}

/** The bars of one sample: per GPU its utilization and memory, then CPU and RAM. */
export function MetricsBars(props: { metrics: IServerMetrics }): JSX.Element {
  const { metrics } = props;
  const memory = percentOf(metrics.memory_used, metrics.memory_total);
  const cpus = metrics.cpu_count
    ? ` of ${metrics.cpu_count} CPU${metrics.cpu_count === 1 ? '' : 's'}`
    : '';
  return (
    <>
      {metrics.gpus.map(gpu => {
        const title = gpuTitle(gpu);
        return (
          <React.Fragment key={gpu.uuid || gpu.index}>
            <MetricBar
              name={`gpu-${gpu.index}-util`}
              label={`GPU ${gpu.index}`}
              percent={gpu.utilization}
              value={
                gpu.utilization === null
                  ? 'n/a'
                  : `${Math.round(gpu.utilization)}%`
              }
              title={title}
            />
            <MetricBar
              name={`gpu-${gpu.index}-memory`}
              label={`GPU ${gpu.index} mem`}
              percent={percentOf(gpu.memory_used, gpu.memory_total)}
              value={`${formatBytes(gpu.memory_used)} / ${formatBytes(
                gpu.memory_total
              )}`}
              title={title}
            />
            {gpu.shared && gpu.own && <OwnUse gpu={gpu} own={gpu.own} />}
            {gpu.mps_warning && (
              <div
                className="jp-ComputeServers-metricsNote"
                data-note={`gpu-${gpu.index}-mps`}
                role="status"
              >
                {gpu.mps_warning}
              </div>
            )}
          </React.Fragment>
        );
      })}
      <MetricBar
        name="cpu"
        label="CPU"
        percent={metrics.cpu_percent}
        value={
          metrics.cpu_percent === null
            ? 'n/a'
            : `${Math.round(metrics.cpu_percent)}%`
        }
        title={
          metrics.cpu_percent === null
            ? 'CPU use unknown'
            : `CPU ${Math.round(metrics.cpu_percent)}% busy${cpus}`
        }
      />
      <MetricBar
        name="memory"
        label="RAM"
        percent={memory}
        value={
          memory === null
            ? 'n/a'
            : `${formatBytes(metrics.memory_used!)} / ${formatBytes(
                metrics.memory_total!
              )}`
        }
        title={
          memory === null
            ? 'Memory use unknown'
            : `Memory ${Math.round(memory)}% in use`
        }
      />
    </>
  );
}

/**
 * A running server's metrics in the sidebar: small bars (per GPU its utilization and memory,
 * then CPU and RAM), and why there are no GPU figures when the server asked for GPUs.
 */
export function ServerMetricsView(props: {
  serverName: string;
  entry: IServerEntry<IServerMetrics | null>;
  /** Whether the server's configuration asks for GPUs (then their absence is explained). */
  wantsGpu?: boolean;
}): JSX.Element {
  const { entry, serverName } = props;
  const metrics = entry.value;
  const reason = metrics?.gpus.length === 0 ? metrics.gpu_reason : '';
  return (
    <div
      className="jp-ComputeServers-metrics"
      aria-label={`Use of ${serverName}`}
      title={
        reason && !props.wantsGpu ? `No GPU figures: ${reason}` : undefined
      }
      data-sampled={metrics?.time ?? undefined}
    >
      {!entry.loaded && !entry.error && (
        <div className="jp-ComputeServers-metricsNote">
          Reading the metrics…
        </div>
      )}
      {metrics && <MetricsBars metrics={metrics} />}
      {reason && props.wantsGpu && (
        <div className="jp-ComputeServers-metricsNote" data-note="gpu">
          No GPU figures: {reason}
        </div>
      )}
      {entry.error && (
        <div className="jp-ComputeServers-metricsNote jp-mod-error">
          {metrics ? 'Metrics not updated' : 'No metrics'}: {entry.error}
        </div>
      )}
    </div>
  );
}
