// readWorld(): torchrun's variables, Slurm's, their defaults, and refusals that name the variable.
import { describe, expect, it } from 'vitest';
import { firstSlurmHost, readWorld, worldEnv } from '../../lib/dist/env.js';

describe('readWorld', () => {
  it('is a world of one without any variable', () => {
    expect(readWorld({})).toMatchObject({ rank: 0, worldSize: 1, localRank: 0, source: 'single process' });
  });

  it('reads torchrun\'s variables as torchrun sets them', () => {
    const w = readWorld({ RANK: '5', WORLD_SIZE: '8', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '4', MASTER_ADDR: 'node0', MASTER_PORT: '1234', TORCHELASTIC_RUN_ID: 'x' });
    expect(w).toEqual({ rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, masterAddr: 'node0', masterPort: 1234, storePort: 1234, source: 'torchrun' });
  });

  it('moves to the next port where torchrun\'s own store holds MASTER_PORT', () => {
    const w = readWorld({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '29500', TORCHELASTIC_USE_AGENT_STORE: 'True' });
    expect(w.storePort).toBe(29501);
    expect(readWorld({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '29500', TORCHELASTIC_USE_AGENT_STORE: 'True', PUZZLE_LLAMA_STORE_PORT: '4000' }).storePort).toBe(4000);
  });

  it('round-trips what the launcher sets', () => {
    const env = worldEnv({ rank: 3, worldSize: 4, localRank: 1, localWorldSize: 2, nodeRank: 1, nnodes: 2, masterAddr: '10.0.0.1', masterPort: 29400 });
    expect(readWorld(env)).toMatchObject({ rank: 3, worldSize: 4, localRank: 1, localWorldSize: 2, masterAddr: '10.0.0.1', masterPort: 29400, source: 'puzzle-llama launch' });
  });

  it('reads Slurm when torchrun\'s variables are absent, with rank 0 on the first host of the node list', () => {
    const w = readWorld({ SLURM_PROCID: '3', SLURM_NTASKS: '8', SLURM_LOCALID: '1', SLURM_NNODES: '2', SLURM_JOB_NODELIST: 'gpu[007-008]', SLURM_JOB_ID: '123456' });
    expect(w).toMatchObject({ rank: 3, worldSize: 8, localRank: 1, localWorldSize: 4, masterAddr: 'gpu007', source: 'slurm' });
    expect(w.masterPort).toBe(20000 + (123456 % 20000));
    // a single task is not a distributed run
    expect(readWorld({ SLURM_PROCID: '0', SLURM_NTASKS: '1' }).worldSize).toBe(1);
  });

  it('refuses malformed variables by name', () => {
    expect(() => readWorld({ RANK: 'one', WORLD_SIZE: '2' })).toThrow(/RANK="one" must be an integer/);
    expect(() => readWorld({ RANK: '2', WORLD_SIZE: '2' })).toThrow(/RANK=2 must be below WORLD_SIZE=2/);
    expect(() => readWorld({ RANK: '0' })).toThrow(/WORLD_SIZE is not/);
    expect(() => readWorld({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '70000' })).toThrow(/MASTER_PORT="70000"/);
    expect(() => readWorld({ RANK: '1', WORLD_SIZE: '4', LOCAL_RANK: '3', LOCAL_WORLD_SIZE: '2' })).toThrow(/LOCAL_RANK=3 must be below LOCAL_WORLD_SIZE=2/);
  });
});

describe('firstSlurmHost', () => {
  it('expands the first range of the first entry', () => {
    expect(firstSlurmHost('node[003-005,9],gpu01')).toBe('node003');
    expect(firstSlurmHost('a,b')).toBe('a');
    expect(firstSlurmHost('single')).toBe('single');
    expect(firstSlurmHost('rack[2-3]-n[10-12]')).toBe('rack2-n10');
    expect(() => firstSlurmHost('n[1-2')).toThrow(/unclosed/);
  });
});
