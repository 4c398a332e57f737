import t from 'tap';
import { credentialsFor } from '../../../src/oci/credentials.ts';
import { parseChallenge } from '../../../src/oci/registry.ts';

t.test('WWW-Authenticate challenges as registries send them', async (t) => {
  t.same(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull"'), {
    scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/debian:pull' },
  });
  t.same(parseChallenge('Basic realm="Registry Realm"'), { scheme: 'basic', params: { realm: 'Registry Realm' } });
  t.same(parseChallenge('Bearer realm="https://x/t", error="insufficient_scope", scope="a:b:c,d"'), { scheme: 'bearer', params: { realm: 'https://x/t', error: 'insufficient_scope', scope: 'a:b:c,d' } });
  t.same(parseChallenge('Bearer realm="quo\\"ted"'), { scheme: 'bearer', params: { realm: 'quo"ted' } });
  t.equal(parseChallenge(''), undefined);
});

t.test('pull secrets in Docker config.json form', async (t) => {
  const auth = (user: string) => Buffer.from(user).toString('base64');
  t.same(credentialsFor({ auths: { 'cr.example:5000': { auth: auth('robot:pa:ss') } } }, 'cr.example:5000', 'f'), { username: 'robot', password: 'pa:ss' });
  t.same(credentialsFor({ auths: { 'https://cr.example/v2/': { username: 'u', password: 'p' } } }, 'cr.example', 'f'), { username: 'u', password: 'p' }, 'URL keys');
  t.same(credentialsFor({ auths: { 'https://index.docker.io/v1/': { auth: auth('d:h') } } }, 'docker.io', 'f'), { username: 'd', password: 'h' }, "Docker Hub's legacy key");
  t.same(credentialsFor({ auths: { 'cr.example': { registrytoken: 'tok' } } }, 'cr.example', 'f'), { registryToken: 'tok' });
  t.equal(credentialsFor({ auths: { 'other.example': { auth: auth('a:b') } } }, 'cr.example', 'f'), undefined, 'none for this registry');
  t.throws(() => credentialsFor({ credsStore: 'desktop' }, 'cr.example', 'f'), { message: /no "auths" object/ });
  t.throws(() => credentialsFor({ auths: { 'cr.example': { auth: auth('nocolon') } } }, 'cr.example', 'f'), { message: /not the base64 of user:password/ });
  t.throws(() => credentialsFor({ auths: { 'cr.example': { identitytoken: 'x' } } }, 'cr.example', 'f'), { message: /identitytoken .* not supported/ });
});
