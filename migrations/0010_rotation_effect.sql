-- What a finished rotation achieved (#15): `revoked` (the credential itself stops working) or
-- `stored_copy_replaced` (a new stored value; the issued credential may still be valid), null
-- until it succeeds; and, where Vigil checked the old credential after a revocation, whether
-- it was refused (true) or still worked (false); null when not checked.
alter table rotations
    add column effect   text check (effect in ('revoked', 'stored_copy_replaced')),
    add column verified boolean;
