#!/bin/sh
# Regenerates the committed test vectors with the real tools (OpenSSH
# ssh-keygen, OpenSSL). Run from this folder: `sh generate.sh`.
# The tests in tests/it/vectors.rs read these files; they record what each
# vector must produce.
set -eu
rm -f ssh_* x509_* ./*.ext ./*.srl ./*.csr

# --- OpenSSH certificates (ssh-keygen -s) ---------------------------------
ssh-keygen -q -t ed25519 -N '' -C 'ippin test CA' -f ssh_ca_ed25519
ssh-keygen -q -t ecdsa -b 256 -N '' -C 'ippin test CA p256' -f ssh_ca_p256
ssh-keygen -q -t ed25519 -N '' -C 'alice' -f ssh_user
# validity 2023-01-01 .. 2033-01-01 (UTC)
V=20230101000000Z:20330101000000Z

cp ssh_user.pub ssh_tmp.pub
ssh-keygen -q -s ssh_ca_ed25519 -I alice@vectors -n alice -z 1 -V "$V" \
  -O source-address=192.0.2.10/32 ssh_tmp.pub
mv ssh_tmp-cert.pub ssh_cert_pinned_v4.pub

ssh-keygen -q -s ssh_ca_p256 -I alice@vectors -n alice,ops -z 2 -V "$V" \
  -O source-address=10.0.0.0/8,2001:db8::/32 -O force-command=/usr/bin/true \
  -O clear -O verify-required -O permit-pty ssh_tmp.pub
mv ssh_tmp-cert.pub ssh_cert_list_p256.pub

ssh-keygen -q -s ssh_ca_ed25519 -I alice@vectors -n alice -z 3 -V "$V" \
  -O source-address=2001:DB8::7 ssh_tmp.pub
mv ssh_tmp-cert.pub ssh_cert_pinned_v6_upper.pub

ssh-keygen -q -s ssh_ca_ed25519 -I alice@vectors -n alice -z 4 -V "$V" ssh_tmp.pub
mv ssh_tmp-cert.pub ssh_cert_unpinned.pub

ssh-keygen -q -s ssh_ca_ed25519 -I host@vectors -h -n alice -z 5 -V "$V" ssh_tmp.pub
mv ssh_tmp-cert.pub ssh_cert_host.pub

ssh-keygen -q -s ssh_ca_ed25519 -I alice@vectors -n alice -z 6 -V "$V" \
  -O critical:no-such-option=x ssh_tmp.pub
mv ssh_tmp-cert.pub ssh_cert_unknown_critical.pub
rm -f ssh_tmp.pub

# --- X.509 client certificates (openssl) ----------------------------------
openssl ecparam -name prime256v1 -genkey -noout -out x509_ca.key.tmp
openssl pkcs8 -topk8 -nocrypt -in x509_ca.key.tmp -out x509_ca.key && rm x509_ca.key.tmp
openssl req -x509 -new -key x509_ca.key -subj '/CN=ippin vectors CA' -days 36500 \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -out x509_ca.pem
openssl ecparam -name prime256v1 -genkey -noout -out x509_client.key
openssl req -new -key x509_client.key -subj '/CN=alice/O=dev' -out x509_client.csr

# name | extension lines for the pin (OID 1.3.9999.1.9)
issue() {
  name=$1; shift
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=clientAuth" "$@" > "$name.ext"
  openssl x509 -req -in x509_client.csr -CA x509_ca.pem -CAkey x509_ca.key -CAcreateserial \
    -days 36500 -extfile "$name.ext" -outform DER -out "x509_$name.der" 2>/dev/null
  rm "$name.ext"
}
issue pinned_v4 '1.3.9999.1.9=ASN1:PRINTABLESTRING:192.0.2.10'
issue pinned_v6 '1.3.9999.1.9=ASN1:PRINTABLESTRING:2001:db8::7'
issue unpinned
# (A duplicate extension cannot be made this way: a config section cannot
# repeat a key, so openssl keeps the last line only. tests/it/x509.rs signs
# duplicates with X509Ca::danger_sign_tbs instead.)
issue last_of_two_lines '1.3.9999.1.9=ASN1:PRINTABLESTRING:192.0.2.10' '1.3.9999.1.9=ASN1:PRINTABLESTRING:192.0.2.11'
issue critical '1.3.9999.1.9=critical,ASN1:PRINTABLESTRING:192.0.2.10'
issue utf8_inner '1.3.9999.1.9=ASN1:UTF8String:192.0.2.10'
# 13 81 0a: a non-minimal length for a 10-byte PrintableString
issue nonminimal_len '1.3.9999.1.9=DER:13:81:0a:31:39:32:2e:30:2e:32:2e:31:30'
# the PrintableString followed by a stray 00 byte
issue trailing_byte '1.3.9999.1.9=DER:13:0a:31:39:32:2e:30:2e:32:2e:31:30:00'
issue leading_zero '1.3.9999.1.9=ASN1:PRINTABLESTRING:192.0.2.010'
issue mapped '1.3.9999.1.9=ASN1:PRINTABLESTRING:::ffff:192.0.2.10'
issue trailing_space '1.3.9999.1.9=DER:13:0b:31:39:32:2e:30:2e:32:2e:31:30:20'

# Teleport layout: the pin in subject attribute 1.3.9999.2.15, the login IP
# in 1.3.9999.1.9 (each its own RDN, after CN and O).
cat > teleport.cnf <<'CNF'
oid_section = new_oids
[new_oids]
teleportLoginIP = 1.3.9999.1.9
teleportPinnedIP = 1.3.9999.2.15
[req]
distinguished_name = dn
string_mask = nombstr
[dn]
CNF
openssl req -new -config teleport.cnf -key x509_client.key \
  -subj '/CN=alice/O=dev/teleportLoginIP=198.51.100.1/teleportPinnedIP=192.0.2.10' -out teleport.csr
printf '%s\n' "basicConstraints=critical,CA:FALSE" "extendedKeyUsage=clientAuth" > teleport.ext
openssl x509 -req -in teleport.csr -CA x509_ca.pem -CAkey x509_ca.key -CAcreateserial \
  -days 36500 -extfile teleport.ext -outform DER -out x509_teleport.der 2>/dev/null
# ... and a certificate whose two layouts disagree
printf '%s\n' "1.3.9999.1.9=ASN1:PRINTABLESTRING:192.0.2.99" >> teleport.ext
openssl x509 -req -in teleport.csr -CA x509_ca.pem -CAkey x509_ca.key -CAcreateserial \
  -days 36500 -extfile teleport.ext -outform DER -out x509_layouts_disagree.der 2>/dev/null
rm -f teleport.csr teleport.ext teleport.cnf x509_client.csr ./*.srl
