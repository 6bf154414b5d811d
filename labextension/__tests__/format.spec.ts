import {
  formatNumber,
  hardwareSummary,
  isTransitional,
  orderedActions,
  stateLabel
} from '../servers/format';

describe('hardwareSummary', () => {
  it('names CPUs, memory and disk', () => {
    expect(hardwareSummary({ cpu: 2, memory_gb: 4.0, disk_gb: 10 })).toBe(
      '2 CPU · 4 GB · 10 GB disk'
    );
  });

  it('adds the GPUs', () => {
    expect(
      hardwareSummary({
        cpu: 4,
        memory_gb: 15,
        disk_gb: 100,
        gpu: { type: 'T4', count: 1 }
      })
    ).toBe('4 CPU · 15 GB · 100 GB disk · 1× T4');
    expect(
      hardwareSummary({ cpu: 8, gpu: { type: 'nvidia-l4', count: 2 } })
    ).toBe('8 CPU · 2× nvidia-l4');
  });

  it('leaves out what is not set', () => {
    expect(
      hardwareSummary({ cpu: null, memory_gb: null, disk_gb: 20, gpu: null })
    ).toBe('20 GB disk');
    expect(hardwareSummary({})).toBe('');
  });

  it('names a machine type and spot pricing', () => {
    expect(
      hardwareSummary({
        machine_type: 'n1-standard-4',
        disk_gb: 50,
        spot: true
      })
    ).toBe('n1-standard-4 · 50 GB disk · spot');
  });

  it('writes fractions of a GB without noise', () => {
    expect(hardwareSummary({ memory_gb: 0.25 })).toBe('0.25 GB');
    expect(hardwareSummary({ memory_gb: 23.456789 })).toBe('23.46 GB');
    expect(formatNumber(4.0)).toBe('4');
  });
});

describe('states and actions', () => {
  it('knows the transitional states', () => {
    for (const state of [
      'starting',
      'stopping',
      'suspending',
      'deprovisioning'
    ]) {
      expect(isTransitional(state)).toBe(true);
    }
    for (const state of [
      'deprovisioned',
      'running',
      'off',
      'suspended',
      'error'
    ]) {
      expect(isTransitional(state)).toBe(false);
    }
  });

  it('orders the allowed actions and drops unknown ones', () => {
    expect(orderedActions(['deprovision', 'reboot', 'stop'])).toEqual([
      'stop',
      'reboot',
      'deprovision'
    ]);
    expect(orderedActions(['delete', 'start', 'fly'])).toEqual([
      'start',
      'delete'
    ]);
    expect(orderedActions([])).toEqual([]);
  });

  it('capitalises a state for the badge', () => {
    expect(stateLabel('deprovisioned')).toBe('Deprovisioned');
    expect(stateLabel('')).toBe('');
  });
});
