set -e
P=23321
swtpm_setup --tpm2 --tpmstate $PWD/st --createek --create-ek-cert --create-platform-cert --lock-nvram --pcr-banks sha256 > setup.log 2>&1 || { echo setup failed; cat setup.log; rm -rf st; mkdir st; swtpm_setup --tpm2 --tpmstate $PWD/st --createek --pcr-banks sha256; }
swtpm socket --tpm2 --tpmstate dir=$PWD/st --flags not-need-init,startup-clear --server type=tcp,port=$P --ctrl type=tcp,port=$((P+1)) & echo $! > swtpm.pid
sleep 1
export TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=$P
tpm2_createek -c ek.ctx -G rsa -u ek.pub; tpm2_flushcontext -t
tpm2_createak -C ek.ctx -c ak.ctx -G rsa -g sha256 -s rsassa -u ak.pem -f pem -n ak.name; tpm2_flushcontext -t; tpm2_flushcontext -s || true
for i in 0 1 2 3 4 5 6 7; do tpm2_pcrextend $i:sha256=$(printf 'evident-pcr-%d' $i | sha256sum | cut -d' ' -f1); done
tpm2_flushcontext -t
NONCE=$(head -c 16 /dev/urandom | xxd -p)
echo -n $NONCE > nonce.hex
tpm2_quote -c ak.ctx -l sha256:0,1,2,3,4,5,6,7 -q $NONCE -m quote.msg -s quote.sig -o quote.pcrs -g sha256
tpm2_flushcontext -t
tpm2_pcrread -o pcrread.bin sha256:0,1,2,3,4,5,6,7
tpm2_checkquote -u ak.pem -m quote.msg -s quote.sig -f quote.pcrs -g sha256 -q $NONCE
kill $(cat swtpm.pid)
